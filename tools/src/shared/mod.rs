//! Plumbing every kdkit tool shares: command-line conventions and config files ([`cli`]),
//! dataset splits and loaders ([`data`]), presets ([`profiles`]), network and optimisation
//! flags ([`train_args`]), the network a run starts from ([`initial`]), self-supervised data ([`ssl_data`]) and encoders ([`encoder`]), frozen teachers ([`teachers`]) and the end of a training run
//! ([`finish`]).

pub mod cli;
pub mod data;
pub mod encoder;
pub mod finish;
pub mod initial;
pub mod machine;
pub mod profiles;
pub mod run;
pub mod ssl_data;
pub mod teachers;
pub mod train_args;

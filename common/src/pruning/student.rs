//! The dense student shaped by a pruned teacher (Park & No, prune-then-distill, ECCV 2022,
//! §3.3): every layer gets as many weights as the pruned teacher kept in that layer. For a
//! k x k convolution, `c_out(l) = round(nnz(l) / (k^2 c_out(l-1)))`, with `c_out(0)` the input
//! channels; max-pool positions are kept.

use crate::error::{Error, Result};
use crate::models::PlanItem;

/// The VGG plan of the student from the teacher's plan and the non-zero weights of each of its
/// 3x3 convolutions, in order.
pub fn vgg_student_plan(teacher: &[PlanItem], conv_nonzeros: &[usize], in_channels: usize) -> Result<Vec<PlanItem>> {
    let convs = teacher.iter().filter(|p| matches!(p, PlanItem::Conv(_))).count();
    if convs != conv_nonzeros.len() {
        return Err(Error::InvalidModel(format!(
            "{} non-zero counts for a plan with {convs} convolutions",
            conv_nonzeros.len()
        )));
    }
    let mut previous = in_channels.max(1);
    let mut nonzeros = conv_nonzeros.iter();
    let mut plan = Vec::with_capacity(teacher.len());
    for item in teacher {
        match item {
            PlanItem::Conv(_) => {
                let nnz = *nonzeros.next().expect("counted above");
                let width = ((nnz as f64 / (9 * previous) as f64).round() as usize).max(1);
                plan.push(PlanItem::Conv(width));
                previous = width;
            }
            other => plan.push(other.clone()),
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::vgg::standard_plan;

    fn parse(plan: &str) -> Vec<PlanItem> {
        serde_json::from_str(plan).unwrap()
    }

    /// Weights of a VGG plan on 3 channels with a 100-class head (bias-free convs, the head's
    /// weight matrix): the count prune-then-distill's student tables use.
    fn weights(plan: &[PlanItem]) -> usize {
        let mut previous = 3;
        let mut total = 0;
        for item in plan {
            if let PlanItem::Conv(c) = item {
                total += 9 * previous * c;
                previous = *c;
            }
        }
        total + previous * 100
    }

    /// The paper's VGG-19 students st36, st59, st79 (prune-then-distill `models/cifar_vgg.py`)
    /// come back from masks whose per-layer non-zero counts are those students' layer sizes;
    /// st79 has 4,153,613 weights (conv 4,141,413 + head 122 x 100, by hand).
    #[test]
    fn reproduces_the_paper_students() {
        // prune-then-distill's VGG-19 plan: kdkit's without the last max pool (that code pools
        // globally after the last convolution).
        let mut teacher = standard_plan(19).unwrap();
        assert!(matches!(teacher.pop(), Some(PlanItem::Pool(_))));
        for (name, student, expected) in [
            (
                "st36",
                "[53,61,\"M\",128,121,\"M\",258,241,258,236,\"M\",485,410,406,374,\"M\",340,358,390,399]",
                12_809_766,
            ),
            (
                "st59",
                "[44,56,\"M\",116,112,\"M\",238,227,240,209,\"M\",408,348,339,246,\"M\",196,214,367,272]",
                8_168_150,
            ),
            ("st79", "[40,49,\"M\",111,97,\"M\",225,187,224,170,\"M\",356,233,220,99,\"M\",111,84,297,122]", 4_153_613),
        ] {
            let student = parse(student);
            let mut previous = 3;
            let nonzeros: Vec<usize> = student
                .iter()
                .filter_map(|p| match p {
                    PlanItem::Conv(c) => {
                        let n = 9 * previous * c;
                        previous = *c;
                        Some(n)
                    }
                    _ => None,
                })
                .collect();
            let derived = vgg_student_plan(&teacher, &nonzeros, 3).unwrap();
            assert_eq!(derived, student, "{name}");
            assert_eq!(weights(&derived), expected, "{name}");
        }
    }

    #[test]
    fn counts_must_match_the_plan() {
        let teacher = standard_plan(11).unwrap();
        assert!(vgg_student_plan(&teacher, &[10, 20], 3).unwrap_err().to_string().contains("2 non-zero counts"));
    }
}

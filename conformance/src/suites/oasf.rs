//! Suite `oasf`: the agent's OASF record, through `oasf::validate_record` (with the
//! taxonomy of `--oasf-schema` when given).

use oasf::{validate_record, Taxonomy};
use serde_json::Value;
use uuid::Uuid;

use crate::{Ctx, Outcome};

pub(crate) async fn record(c: &Ctx, agent: Uuid) -> Outcome {
    let path = format!("/agents/{agent}/oasf.json");
    super::when_advertised(c, agent, "OASFRecord", &path, || async {
        let r = c.get(&path).await?.ok_json()?;
        check_record(&r, c.opts.taxonomy.as_ref())
    })
    .await
}

/// Valid, or the errors (path, code, message).
pub(crate) fn check_record(record: &Value, taxonomy: Option<&Taxonomy>) -> Result<String, String> {
    let report = validate_record(record, taxonomy);
    if report.is_valid() {
        Ok(format!(
            "valid{}, {} warning(s)",
            if taxonomy.is_some() {
                " against the taxonomy"
            } else {
                ""
            },
            report.warnings.len()
        ))
    } else {
        Err(report
            .errors
            .iter()
            .map(|i| format!("{} {}: {}", i.path, i.code, i.message))
            .collect::<Vec<_>>()
            .join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors/oasf");

    fn fixture(name: &str) -> Value {
        let text = std::fs::read_to_string(format!("{DIR}/{name}")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn valid_fixtures_pass_and_invalid_ones_fail() {
        let taxonomy = Taxonomy::load_dir(format!("{DIR}/schema-v1.0.4")).unwrap();
        for name in ["valid_0.8.0_record.json", "valid_1.0.0_record.json"] {
            let r = fixture(name);
            assert!(
                check_record(&r, None).is_ok(),
                "{name}: {:?}",
                check_record(&r, None)
            );
        }
        assert!(check_record(&fixture("valid_1.0.0_record.json"), Some(&taxonomy)).is_ok());
        for name in ["invalid_0.8.0_record.json", "invalid_1.0.0_record.json"] {
            let err = check_record(&fixture(name), Some(&taxonomy)).unwrap_err();
            assert!(!err.is_empty(), "{name}");
        }
        assert!(check_record(&serde_json::json!([]), None).is_err());
    }
}

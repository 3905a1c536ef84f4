//! Reports: a text table for people, JSON and JUnit XML for machines.

use serde_json::json;

use crate::runner::CheckResult;

/// Counts of (passed, failed, skipped).
pub fn counts(results: &[CheckResult]) -> (usize, usize, usize) {
    let n = |l: &str| results.iter().filter(|r| r.outcome.label() == l).count();
    (n("pass"), n("fail"), n("skip"))
}

/// A readable table: check, result, detail; then a summary line.
pub fn text(target: &str, results: &[CheckResult]) -> String {
    let names: Vec<String> = results.iter().map(CheckResult::name).collect();
    let w = names.iter().map(String::len).max().unwrap_or(5).max(5);
    let mut s = format!("agentidp-conformance report for {target}\n\n");
    s.push_str(&format!("{:<w$}  {:<6}  DETAIL\n", "CHECK", "RESULT"));
    s.push_str(&format!(
        "{}  {}  {}\n",
        "-".repeat(w),
        "-".repeat(6),
        "-".repeat(40)
    ));
    for (r, name) in results.iter().zip(&names) {
        let label = r.outcome.label().to_ascii_uppercase();
        let detail = r.outcome.detail().replace('\n', " ");
        s.push_str(&format!("{name:<w$}  {label:<6}  {detail}\n"));
    }
    let (p, f, k) = counts(results);
    s.push_str(&format!("\n{p} passed, {f} failed, {k} skipped\n"));
    s
}

/// JSON: `{target, summary: {passed, failed, skipped}, results: [{id, check, suite, clause, agent, result, detail, millis}]}`.
pub fn json(target: &str, results: &[CheckResult]) -> String {
    let (p, f, k) = counts(results);
    let rs: Vec<_> = results
        .iter()
        .map(|r| {
            json!({
                "id": r.name(),
                "check": r.check.id,
                "suite": r.check.suite,
                "clause": r.check.clause,
                "description": r.check.description,
                "agent": r.agent.map(|a| a.to_string()),
                "result": r.outcome.label(),
                "detail": r.outcome.detail(),
                "millis": r.millis,
            })
        })
        .collect();
    let v = json!({"target": target, "summary": {"passed": p, "failed": f, "skipped": k}, "results": rs});
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// JUnit XML: one `testsuite` per suite, one `testcase` per check result.
pub fn junit(target: &str, results: &[CheckResult]) -> String {
    let (_, f, k) = counts(results);
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(&format!(
        "<testsuites name=\"agentidp-conformance {}\" tests=\"{}\" failures=\"{f}\" skipped=\"{k}\">\n",
        xml_escape(target),
        results.len()
    ));
    for suite in crate::SUITES {
        let rs: Vec<&CheckResult> = results.iter().filter(|r| r.check.suite == *suite).collect();
        if rs.is_empty() {
            continue;
        }
        let (_, sf, sk) = counts(&rs.iter().map(|r| (*r).clone()).collect::<Vec<_>>());
        s.push_str(&format!(
            "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{sf}\" skipped=\"{sk}\">\n",
            rs.len()
        ));
        for r in rs {
            s.push_str(&format!(
                "    <testcase classname=\"{suite}\" name=\"{}\" time=\"{:.3}\">",
                xml_escape(&r.name()),
                r.millis as f64 / 1000.0
            ));
            let detail = xml_escape(r.outcome.detail());
            match r.outcome.label() {
                "fail" => s.push_str(&format!(
                    "<failure message=\"{detail}\">{}: {detail}</failure>",
                    xml_escape(r.check.clause)
                )),
                "skip" => s.push_str(&format!("<skipped message=\"{detail}\"/>")),
                _ => {}
            }
            s.push_str("</testcase>\n");
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}

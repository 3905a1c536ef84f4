//! Runs the selected checks in table order.

use std::time::Instant;

use uuid::Uuid;

use crate::check::{Check, Outcome, Scope, CHECKS};
use crate::ctx::Ctx;

/// The result of one check (per agent for agent checks).
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// The check.
    pub check: &'static Check,
    /// The agent it ran for, for agent checks.
    pub agent: Option<Uuid>,
    /// What happened.
    pub outcome: Outcome,
    /// How long it took, in milliseconds.
    pub millis: u128,
}

impl CheckResult {
    /// The check id, with `[<agent uuid>]` for agent checks.
    pub fn name(&self) -> String {
        match self.agent {
            Some(a) => format!("{}[{a}]", self.check.id),
            None => self.check.id.to_string(),
        }
    }
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id)
    }
}

/// Runs every check of `suites` (all when empty) against `ctx`, calling `progress` after each.
pub async fn run(
    ctx: &Ctx,
    suites: &[String],
    mut progress: impl FnMut(&CheckResult),
) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for check in CHECKS {
        if !suites.is_empty() && !suites.iter().any(|s| s == check.suite) {
            continue;
        }
        let runs: Vec<Option<Uuid>> = match check.scope {
            Scope::Node(_) => vec![None],
            Scope::Agent(_) if ctx.opts.agents.is_empty() => vec![None],
            Scope::Agent(_) => ctx.opts.agents.iter().copied().map(Some).collect(),
        };
        for agent in runs {
            let start = Instant::now();
            let outcome = match (check.scope, agent) {
                (Scope::Node(f), _) => f(ctx).await,
                (Scope::Agent(f), Some(a)) => f(ctx, a).await,
                (Scope::Agent(_), None) => Outcome::Skip("no --agent given".to_string()),
            };
            let r = CheckResult {
                check,
                agent,
                outcome,
                millis: start.elapsed().as_millis(),
            };
            progress(&r);
            out.push(r);
        }
    }
    out
}

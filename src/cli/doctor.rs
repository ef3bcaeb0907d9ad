//! `graphgate doctor`: prints every finding of [`crate::gateway::doctor`]
//! (one per line, each with its fix). The exit status is non-zero when
//! any check FAILs.
//!
//! Line format (fixed: scripts grep it): `ok|warn|FAIL  <what>: <detail> —
//! fix: <how>`; `--json` gives the same findings as one object.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::gateway::doctor::{Level, Report, findings};

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Machine-readable output: {"ok": bool, "findings": [{"level",
    /// "check", "detail", "fix"}]}.
    #[arg(long)]
    json: bool,
}

/// Run every check. `config_file` is the file `load_config` would read;
/// `data_dir` the `--data-dir` override.
pub async fn run(
    config_file: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    args: &DoctorArgs,
) -> anyhow::Result<ExitCode> {
    let report = Report {
        findings: findings(config_file, data_dir).await,
    };
    let failed = report.failed();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"ok": !failed, "findings": report.findings})
        );
    } else {
        for finding in &report.findings {
            println!("{}", finding.line());
        }
        let count = |level| report.findings.iter().filter(|f| f.level == level).count();
        println!(
            "\n{} check(s): {} ok, {} warning(s), {} failure(s).",
            report.findings.len(),
            count(Level::Ok),
            count(Level::Warn),
            count(Level::Fail)
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

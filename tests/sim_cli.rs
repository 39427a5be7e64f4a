//! `agora sim run`: the real binary ends its output with `trace <hex>`, the same for the same
//! seed, writes its report files, and exits 1 with the seed and the replay command when an
//! invariant breaks (tests/scenarios/impossible-liveness.toml breaks one for every seed).

use std::process::Command;

fn sim_run(scenario: &str, seed: u64, out: &std::path::Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args([
            "sim",
            "run",
            scenario,
            "--seed",
            &seed.to_string(),
            "--quiet",
            "--out",
        ])
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("agora runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
    )
}

#[test]
fn sim_run_prints_a_stable_trace_and_writes_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (code, a) = sim_run("sim/scenarios/elastic-small.toml", 2, &dir.path().join("a"));
    assert_eq!(code, 0, "{a}");
    let (_, b) = sim_run("sim/scenarios/elastic-small.toml", 2, &dir.path().join("b"));
    let last = |s: &str| s.lines().last().unwrap_or("").to_string();
    assert!(last(&a).starts_with("trace "), "{a}");
    assert_eq!(last(&a).len(), "trace ".len() + 16, "{a}");
    assert_eq!(last(&a), last(&b));
    assert!(a.contains("64/64 finished"), "{a}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("a/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["seed"], 2);
    let csv = std::fs::read_to_string(dir.path().join("a/frameworks.csv")).unwrap();
    assert!(csv.starts_with("name,kind,tasks,finished"), "{csv}");
}

#[test]
fn sim_run_failure_names_the_seed_and_the_replay_command() {
    // A scenario whose liveness bound (1 virtual ms) no run can meet: it fails for every seed.
    let scenario = "tests/scenarios/impossible-liveness.toml";
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = sim_run(scenario, 9, dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED"), "{out}");
    assert!(
        out.contains("not converged within the liveness bound of 1 ms"),
        "{out}"
    );
    assert!(out.contains("seed 9; replay with:"), "{out}");
    assert!(
        out.contains(&format!("agora sim run {scenario} --seed 9")),
        "{out}"
    );
    assert!(
        out.lines().last().unwrap_or("").starts_with("trace "),
        "{out}"
    );
}

#[test]
fn sim_run_of_an_experiment_writes_csv_svg_and_a_summary_and_ends_with_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp-small.toml");
    std::fs::write(
        &exp,
        "[experiment]\nkind = \"table2\"\ntitle = \"small\"\nseeds = 1\nks = [2]\nt_ms = 4000\nelastic_split = 4\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = || {
        let o = Command::new(env!("CARGO_BIN_EXE_agora"))
            .args(["sim", "run"])
            .arg(&exp)
            .arg("--out")
            .arg(&out)
            .arg("--progress")
            .output()
            .expect("agora runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // Not a terminal, but --progress: plain progress lines on stderr.
        assert!(String::from_utf8_lossy(&o.stderr).contains("(runs): 4/4"));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let (a, b) = (run(), run());
    let last = |s: &str| s.lines().last().unwrap().to_string();
    assert!(last(&a).starts_with("trace "), "{a}");
    assert_eq!(last(&a), last(&b), "same seeds, same traces");
    let csv = std::fs::read_to_string(out.join("table2.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 * 3, "{csv}");
    let svg = std::fs::read_to_string(out.join("table2-rampup.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("paper") && md.contains("table2-completion.svg"),
        "{md}"
    );
}

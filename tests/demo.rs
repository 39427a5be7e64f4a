//! `agora demo` runs the whole cluster in one process and ends with its report.

mod common;

#[test]
fn demo_runs_both_frameworks_and_reports() {
    let out = std::process::Command::new(common::agora_bin())
        .args([
            "demo",
            "--batch-tasks",
            "12",
            "--task-secs",
            "0.1",
            "--service-instances",
            "2",
        ])
        .output()
        .expect("agora demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("batch:  12/12 finished"), "{text}");
    let batch_row = text
        .lines()
        .find(|l| l.starts_with("batch "))
        .expect("batch row");
    let cols: Vec<&str> = batch_row.split_whitespace().collect();
    assert_eq!(
        &cols[1..4],
        ["12", "12", "0"],
        "tasks run, finished, failed: {batch_row}"
    );
    assert!(text.lines().any(|l| l.starts_with("service ")), "{text}");
    assert!(text.contains("cluster utilization"), "{text}");
}

//! The container launcher as its own small binary (the `agora` binary has the same entry point
//! as the hidden `agora launcher` subcommand). See `agora_isolation::launcher_main`.

fn main() {
    // Logs go to stderr, which the agent points at the container's `launcher.log`.
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(agora_isolation::launcher_main(&args));
}

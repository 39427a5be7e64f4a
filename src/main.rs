//! `agora`: the command line of the agora cluster manager.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "agora",
    version,
    about = "agora: a datacenter resource manager built on resource offers"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "AGORA_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a master.
    Master(cli::master::MasterArgs),
    /// Run an agent.
    Agent(cli::agent::AgentArgs),
    /// Run a command as a task (or N copies with --instances) and wait for it.
    Run(cli::run::RunArgs),
    /// Print the master's state as JSON.
    State(cli::query::QueryArgs),
    /// List agents.
    Agents(cli::query::QueryArgs),
    /// List frameworks.
    Frameworks(cli::query::QueryArgs),
    /// List tasks.
    Tasks(cli::query::QueryArgs),
    /// A master, 3 agents and two example frameworks in one process (in-memory transport).
    Demo(cli::demo::DemoArgs),
    /// A master and one agent on 127.0.0.1 for local use, until Ctrl-C.
    Dev(cli::dev::DevArgs),
    /// The deterministic cluster simulator: `agora sim run SCENARIO --seed N --out DIR`.
    Sim(cli::sim::SimArgs),
    /// The built-in command executor (started by agents, not by people).
    #[command(hide = true)]
    Executor,
}

fn main() {
    let cli = Cli::parse();
    let quiet = matches!(
        cli.cmd,
        Cmd::Run(_)
            | Cmd::Demo(_)
            | Cmd::State(_)
            | Cmd::Agents(_)
            | Cmd::Frameworks(_)
            | Cmd::Tasks(_)
    );
    // The simulated cores log every injected fault (some at error level, by design): silent
    // unless RUST_LOG asks; the run's own output says what went wrong.
    let level = match cli.cmd {
        Cmd::Sim(_) => "off",
        _ if quiet => "warn",
        _ => "info",
    };
    cli::init_logging(cli.log_json, level);
    let result = match cli.cmd {
        Cmd::Master(a) => cli::master::run(a),
        Cmd::Agent(a) => cli::agent::run(a),
        Cmd::Run(a) => cli::run::run(a),
        Cmd::State(a) => cli::query::state(a),
        Cmd::Agents(a) => cli::query::agents(a),
        Cmd::Frameworks(a) => cli::query::frameworks(a),
        Cmd::Tasks(a) => cli::query::tasks(a),
        Cmd::Demo(a) => cli::demo::run(a),
        Cmd::Dev(a) => cli::dev::run(a),
        Cmd::Sim(a) => cli::sim::run(a),
        Cmd::Executor => cli::executor::run(),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("agora: error: {e:#}");
            std::process::exit(2);
        }
    }
}

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
    /// Emulated agents for benchmarks (scripts/bench-failover.sh).
    #[command(hide = true)]
    EmulateAgents(cli::emulate_agents::EmulateArgs),
    /// The masters of the group: who leads, term, commit index, each peer's replication.
    Masters(cli::query::QueryArgs),
    /// A master, 3 agents and two example frameworks in one process (in-memory transport).
    Demo(cli::demo::DemoArgs),
    /// A master and one agent on 127.0.0.1 for local use, until Ctrl-C.
    Dev(cli::dev::DevArgs),
    /// Show the running allocation policy, or switch it: `agora allocator set lottery`.
    Allocator(cli::alloc_cmds::OperatorArgs),
    /// Show role weights, or set some: `agora weights set eng=2 ads=0.5`.
    Weights(cli::alloc_cmds::OperatorArgs),
    /// Set strict-priority levels of roles: `agora priorities set prod=10`.
    Priorities(cli::alloc_cmds::OperatorArgs),
    /// Show role quotas, or set/remove one: `agora quota set eng --guarantee 'cpus:4'`.
    Quota(cli::alloc_cmds::QuotaArgs),
    /// List roles: weight, priority, frameworks, share, allocation, reservations.
    Roles(cli::alloc_cmds::OperatorArgs),
    /// Reserve unused resources of an agent for a role: `agora reserve --agent ID --role eng 'cpus:2'`.
    Reserve(cli::alloc_cmds::ReserveArgs),
    /// Give a dynamic reservation back: `agora unreserve --agent ID --role eng 'cpus:2'`.
    Unreserve(cli::alloc_cmds::ReserveArgs),
    /// Agents in maintenance, or change one: `agora maintenance drain|down|up AGENT_ID`.
    Maintenance(cli::maintenance::MaintenanceArgs),
    /// The deterministic cluster simulator: `agora sim run SCENARIO --seed N --out DIR`.
    Sim(cli::sim::SimArgs),
    /// The built-in command executor (started by agents, not by people).
    #[command(hide = true)]
    Executor,
    /// The per-container launcher of the libcontainer containerizer (started by agents).
    #[command(hide = true)]
    Launcher {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
            | Cmd::Allocator(_)
            | Cmd::Weights(_)
            | Cmd::Priorities(_)
            | Cmd::Roles(_)
            | Cmd::Quota(_)
            | Cmd::Reserve(_)
            | Cmd::Unreserve(_)
            | Cmd::Maintenance(_)
            | Cmd::Launcher { .. }
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
        Cmd::Masters(a) => cli::masters::run(a),
        Cmd::EmulateAgents(a) => cli::emulate_agents::run(a),
        Cmd::Demo(a) => cli::demo::run(a),
        Cmd::Dev(a) => cli::dev::run(a),
        Cmd::Sim(a) => cli::sim::run(a),
        Cmd::Executor => cli::executor::run(),
        Cmd::Allocator(a) => cli::alloc_cmds::allocator(a),
        Cmd::Weights(a) => cli::alloc_cmds::weights(a),
        Cmd::Priorities(a) => cli::alloc_cmds::priorities(a),
        Cmd::Roles(a) => cli::alloc_cmds::roles(a),
        Cmd::Quota(a) => cli::alloc_cmds::quota(a),
        Cmd::Reserve(a) => cli::alloc_cmds::reserve(a, false),
        Cmd::Unreserve(a) => cli::alloc_cmds::reserve(a, true),
        Cmd::Maintenance(a) => cli::maintenance::run(a),
        // Single-threaded on purpose: libcontainer forks (see agora_isolation::launcher_main).
        Cmd::Launcher { args } => Ok(agora_isolation::launcher_main(&args)),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("agora: error: {e:#}");
            std::process::exit(2);
        }
    }
}

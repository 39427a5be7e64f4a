//! `agora executor`: the built-in command executor, started by agents inside a container.

pub fn run() -> anyhow::Result<i32> {
    let code = agora_actors::sdk::command::run_command_executor(super::tcp_transport)?;
    Ok(code)
}

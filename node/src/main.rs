//! The `agentidp` binary; everything lives in the `node` library.

fn main() -> std::process::ExitCode {
    node::cli::main()
}

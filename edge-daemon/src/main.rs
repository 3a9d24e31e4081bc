//! `edge-daemon`: one binary for the daemon, the simulator, the demo and the admin CLI.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use shortener_cli::args::Cli;
use shortener_cli::config::Env;
use shortener_cli::{error, run, Io};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(error::EXIT_API);
        }
    };
    let env = Env::from_process();
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut io = Io {
        stdin_is_terminal: stdin.is_terminal(),
        stdout_is_terminal: stdout.is_terminal(),
        stdin: &mut stdin.lock(),
        stdout: &mut stdout.lock(),
        stderr: &mut std::io::stderr(),
    };
    let result = runtime.block_on(run(cli, &env, &mut io)).and_then(|()| {
        io.stdout
            .flush()
            .map_err(|e| error::CliError::io("stdout", e))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

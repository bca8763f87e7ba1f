//! `shortener`: a command-line client of url-api's REST API.
//!
//! `args` is the command line, `request` turns it into API requests and `format` turns
//! answers into text (both pure), `config` finds the URL and key, `client` is the one
//! place that does HTTP, and [`run`] ties them together per subcommand.

pub mod args;
pub mod client;
pub mod config;
pub mod error;
pub mod format;
pub mod request;

use std::io::{BufRead, Write};
use std::path::Path;

use chrono::Utc;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use args::{Cli, Command, ConfigCommand, LinksCommand, QrArgs, QrFormat};
use client::Client;
use config::{Env, FileConfig, Settings};
use error::{CliError, ConfigError};

/// The process's standard streams, passed in so tests can drive [`run`].
pub struct Io<'a> {
    pub stdin: &'a mut dyn BufRead,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
    pub stdin_is_terminal: bool,
    pub stdout_is_terminal: bool,
}

impl Io<'_> {
    fn out(&mut self, text: &str) -> Result<(), CliError> {
        self.stdout
            .write_all(text.as_bytes())
            .map_err(|e| CliError::io("stdout", e))
    }

    fn json(&mut self, value: &Value) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
        self.out(&format!("{text}\n"))
    }

    fn note(&mut self, text: &str) {
        // Notes are advice; a closed stderr must not fail the command.
        let _ = writeln!(self.stderr, "{text}");
    }

    /// The first line of stdin without its line ending; typed at a terminal, asked for
    /// with `prompt` and not echoed.
    fn read_secret(&mut self, what: &str, prompt: &str) -> Result<String, CliError> {
        let line = if self.stdin_is_terminal {
            rpassword::prompt_password(prompt).map_err(|e| CliError::io("terminal", e))?
        } else {
            let mut line = String::new();
            self.stdin
                .read_line(&mut line)
                .map_err(|e| CliError::io("stdin", e))?;
            line
        };
        let secret = line.trim_end_matches(['\n', '\r']).to_owned();
        if secret.is_empty() {
            return Err(CliError::Usage(format!("no {what} on stdin")));
        }
        Ok(secret)
    }
}

pub async fn run(cli: Cli, env: &Env, io: &mut Io<'_>) -> Result<(), CliError> {
    // Only commands that use the file need to find it (completions work without HOME).
    let config_path = || config::config_path(cli.config.as_deref(), env);
    match cli.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "shortener", &mut script);
            io.stdout
                .write_all(&script)
                .map_err(|e| CliError::io("stdout", e))
        }
        Command::Config(cmd) => config_command(cmd, &config_path()?, cli.json, io),
        Command::Login(args) => {
            let config_path = config_path()?;
            let file = config::load(&config_path)?;
            let url = args
                .url
                .or(cli.server)
                .or_else(|| env.url.clone())
                .or_else(|| file.url.clone())
                .ok_or(ConfigError::MissingUrl)?;
            login(url, file, &config_path, cli.json, io).await
        }
        Command::Links(cmd) => {
            let file = config::load(&config_path()?)?;
            let client = Client::new(config::resolve(cli.server.as_deref(), env, &file)?)?;
            links_command(cmd, &client, cli.json, io).await
        }
        Command::Stats(args) => {
            let file = config::load(&config_path()?)?;
            let client = Client::new(config::resolve(cli.server.as_deref(), env, &file)?)?;
            let base = &client.settings().base_url;
            let answer = client
                .json(request::account_stats(base, &args, Utc::now())?)
                .await?;
            if cli.json {
                return io.json(&answer);
            }
            let stats: format::AccountStats = typed(answer)?;
            io.out(&format::account_stats(&stats, args.series))
        }
    }
}

/// An answer read into the shape human output needs.
fn typed<T: DeserializeOwned>(value: Value) -> Result<T, CliError> {
    serde_json::from_value(value).map_err(|e| CliError::Api {
        status: 200,
        code: "invalid_response".into(),
        message: format!("unexpected answer from the API: {e}"),
        retry_after: None,
    })
}

async fn links_command(
    cmd: LinksCommand,
    client: &Client,
    json: bool,
    io: &mut Io<'_>,
) -> Result<(), CliError> {
    let base = &client.settings().base_url;
    let now = Utc::now();
    let show_link = |io: &mut Io<'_>, answer: Value| -> Result<(), CliError> {
        if json {
            return io.json(&answer);
        }
        let link: format::Link = typed(answer)?;
        io.out(&format::link_details(&link))
    };
    match cmd {
        LinksCommand::Create(args) => {
            let password = if args.password_stdin {
                Some(io.read_secret("password", "Password for visitors: ")?)
            } else {
                None
            };
            let answer = client.json(request::create(base, &args, password)?).await?;
            show_link(io, answer)
        }
        LinksCommand::Get(args) => {
            let answer = client.json(request::details(base, &args.code)).await?;
            show_link(io, answer)
        }
        LinksCommand::Edit(args) => {
            let password = if args.password_stdin {
                Some(io.read_secret("password", "Password for visitors: ")?)
            } else {
                None
            };
            let answer = client.json(request::edit(base, &args, password)?).await?;
            show_link(io, answer)
        }
        LinksCommand::List(args) => {
            let mut items = Vec::new();
            let mut cursor: Option<String> = None;
            let next = loop {
                let page = client
                    .json(request::list(base, &args, cursor.as_deref(), now)?)
                    .await?;
                let next = page["next_cursor"].as_str().map(str::to_owned);
                if let Value::Array(page_items) = page["items"].clone() {
                    items.extend(page_items);
                }
                match next {
                    Some(c) if args.all => cursor = Some(c),
                    next => break next,
                }
            };
            if json {
                return io.json(&json!({ "items": items, "next_cursor": next }));
            }
            let links: Vec<format::Link> = typed(Value::Array(items))?;
            io.out(&format::links_table(&links))?;
            if let Some(c) = next {
                io.note(&format!("more links: add --cursor {c} (or --all)"));
            }
            Ok(())
        }
        LinksCommand::Delete(args) => {
            let mut deleted = Vec::new();
            let mut failed = Vec::new();
            for code in &args.codes {
                match client.send(request::delete(base, code)).await {
                    Ok(_) => {
                        if !json {
                            io.out(&format!("deleted {code}\n"))?;
                        }
                        deleted.push(code.clone());
                    }
                    // Nothing more will get through: stop rather than repeat the error.
                    Err(e @ CliError::Unreachable { .. }) => return Err(e),
                    Err(e) => {
                        io.note(&format!("error: {code}: {e}"));
                        failed.push((code.clone(), e));
                    }
                }
            }
            if json {
                let failures: Vec<Value> = failed
                    .iter()
                    .map(|(code, e)| json!({ "code": code, "error": e.to_string() }))
                    .collect();
                io.json(&json!({ "deleted": deleted, "failed": failures }))?;
            }
            match failed.len() {
                0 => Ok(()),
                1 if args.codes.len() == 1 => Err(failed.pop().expect("one").1),
                n => Err(CliError::Partial(format!(
                    "{n} of {} links not deleted",
                    args.codes.len()
                ))),
            }
        }
        LinksCommand::Stats(args) => {
            let answer = client.json(request::stats(base, &args, now)?).await?;
            if json {
                return io.json(&answer);
            }
            let stats: format::LinkStats = typed(answer)?;
            io.out(&format::link_stats(&stats, args.series))
        }
        LinksCommand::Qr(args) => qr(client, &args, json, io).await,
        LinksCommand::Import(args) => {
            let csv = read_input(&args.file, io)?;
            let answer = client.json(request::import(base, csv)).await?;
            let result: format::BulkResult = typed(answer.clone())?;
            if json {
                io.json(&answer)?;
            } else {
                io.out(&format::import_results(&result))?;
            }
            match result.failed {
                0 => Ok(()),
                n => Err(CliError::Partial(format!(
                    "{n} of {} rows not imported",
                    result.results.len()
                ))),
            }
        }
        LinksCommand::Export(args) => {
            let format = request::export_format(&args, json);
            let answer = client.send(request::export(base, format)).await?;
            let name = match format {
                args::ExportFormat::Csv => "csv",
                args::ExportFormat::Json => "json",
            };
            write_output(io, args.output.as_deref(), &answer.body, name, json)
        }
    }
}

/// The bytes of `path`, or of stdin for `-`.
fn read_input(path: &Path, io: &mut Io<'_>) -> Result<Vec<u8>, CliError> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        io.stdin
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::io("stdin", e))?;
        return Ok(bytes);
    }
    std::fs::read(path).map_err(|e| CliError::io(path, e))
}

/// `bytes` to stdout (no path, or `-`), else to the file, saying what was written.
fn write_output(
    io: &mut Io<'_>,
    path: Option<&Path>,
    bytes: &[u8],
    format: &str,
    json: bool,
) -> Result<(), CliError> {
    let Some(path) = path.filter(|p| *p != Path::new("-")) else {
        return io
            .stdout
            .write_all(bytes)
            .map_err(|e| CliError::io("stdout", e));
    };
    std::fs::write(path, bytes).map_err(|e| CliError::io(path, e))?;
    if json {
        io.json(&json!({ "path": path, "format": format, "bytes": bytes.len() }))
    } else {
        io.out(&format!(
            "wrote {} ({format}, {} bytes)\n",
            path.display(),
            bytes.len()
        ))
    }
}

async fn qr(client: &Client, args: &QrArgs, json: bool, io: &mut Io<'_>) -> Result<(), CliError> {
    let format = request::qr_format(args);
    let to_file = args.output.as_deref().filter(|p| *p != Path::new("-"));
    if to_file.is_none() && format == QrFormat::Png && io.stdout_is_terminal {
        return Err(CliError::Usage(
            "a PNG is unreadable on a terminal: pass -o FILE, pipe the output, or use --format svg"
                .into(),
        ));
    }
    let answer = client
        .send(request::qr(&client.settings().base_url, args))
        .await?;
    let name = match format {
        QrFormat::Svg => "svg",
        QrFormat::Png => "png",
    };
    write_output(io, to_file, &answer.body, name, json)
}

fn config_command(
    cmd: ConfigCommand,
    path: &Path,
    json: bool,
    io: &mut Io<'_>,
) -> Result<(), CliError> {
    match cmd {
        ConfigCommand::Path => io.out(&format!("{}\n", path.display())),
        ConfigCommand::Show => {
            let shown = config::redacted(&config::load(path)?);
            if json {
                return io
                    .json(&json!({ "path": path, "url": shown.url, "api_key": shown.api_key }));
            }
            io.out(&format!("# {}\n{}", path.display(), config::render(&shown)))
        }
        ConfigCommand::Set { key, value } => {
            let mut file = config::load(path)?;
            config::set(&mut file, &key, Some(value))?;
            config::save(path, &file)?;
            Ok(())
        }
        ConfigCommand::Unset { key } => {
            let mut file = config::load(path)?;
            config::set(&mut file, &key, None)?;
            config::save(path, &file)?;
            Ok(())
        }
    }
}

/// Reads the key from stdin, checks it against the API (one page of one link), then
/// saves URL and key; a wrong key or URL is never saved.
async fn login(
    url: String,
    mut file: FileConfig,
    path: &Path,
    json: bool,
    io: &mut Io<'_>,
) -> Result<(), CliError> {
    let base_url = config::parse_base_url(&url)?;
    let api_key = io
        .read_secret("API key", &format!("API key for {base_url}: "))?
        .trim()
        .to_owned();
    let client = Client::new(Settings {
        base_url: base_url.clone(),
        api_key: api_key.clone(),
    })?;
    let probe = request::list(
        &base_url,
        &args::ListArgs {
            limit: Some(1),
            ..Default::default()
        },
        None,
        Utc::now(),
    )?;
    client.send(probe).await?;
    file.url = Some(base_url.to_string());
    file.api_key = Some(api_key);
    config::save(path, &file)?;
    if json {
        io.json(&json!({ "path": path, "url": base_url.as_str() }))
    } else {
        io.out(&format!(
            "saved {base_url} and its key to {}\n",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// A reader that stopped reading.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_closed_stdout_is_told_apart_from_other_failures() {
        let (mut stdin, mut stdout, mut stderr) = (&b""[..], ClosedPipe, Vec::new());
        let mut io = Io {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
            stdin_is_terminal: false,
            stdout_is_terminal: false,
        };
        let env = Env {
            config: Some("/nonexistent/config.toml".into()),
            ..Env::default()
        };
        let cli = Cli::parse_from(["shortener", "config", "path"]);
        let e = run(cli, &env, &mut io).await.unwrap_err();
        assert!(e.is_broken_pipe(), "{e}");
        assert!(!CliError::io("x", std::io::ErrorKind::NotFound.into()).is_broken_pipe());
    }

    #[tokio::test]
    async fn png_is_not_written_to_a_terminal() {
        let (mut stdin, mut stdout, mut stderr) = (&b""[..], Vec::new(), Vec::new());
        let mut io = Io {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
            stdin_is_terminal: false,
            stdout_is_terminal: true,
        };
        let env = Env {
            // Nothing listens there: the refusal must come before any request.
            url: Some("http://127.0.0.1:1".into()),
            api_key: Some("k".into()),
            config: Some("/nonexistent/config.toml".into()),
            ..Env::default()
        };
        let cli = Cli::parse_from(["shortener", "links", "qr", "abc", "--format", "png"]);
        let e = run(cli, &env, &mut io).await.unwrap_err();
        assert!(matches!(e, CliError::Usage(_)), "{e}");
        assert!(stdout.is_empty());
    }
}

//! The command line, as clap parses it. Names follow url-api's fields (`long_url`,
//! `max_visits`, `expired_url`) so the CLI, the API and its docs read alike.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "shortener",
    version,
    about = "Manage short links of a shortener-stack url-api from the terminal",
    after_help = "The API URL and key come from --server, then SHORTENER_URL and \
SHORTENER_API_KEY, then the config file written by `shortener login`.\n\
Exit codes: 0 ok, 1 the API refused or failed, 2 bad usage or configuration, 3 API unreachable."
)]
pub struct Cli {
    /// url-api base URL, e.g. https://sho.rt (default: SHORTENER_URL, then the config file)
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Config file (default: SHORTENER_CONFIG, then $XDG_CONFIG_HOME/shortener/config.toml)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the API's JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

// Built once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, edit and delete links; their stats and QR codes
    #[command(subcommand)]
    Links(LinksCommand),
    /// Clicks over all your links
    Stats(AccountStatsArgs),
    /// Save the API URL and key in the config file (the key is read from stdin)
    Login(LoginArgs),
    /// Show or change the config file
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script, e.g. `shortener completions bash > ~/.local/share/bash-completion/completions/shortener`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

// Built once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum LinksCommand {
    /// Shorten a URL
    Create(CreateArgs),
    /// List your links, newest first
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one link with its click totals
    #[command(visible_alias = "show")]
    Get(CodeArg),
    /// Change a link: only the options given change
    Edit(EditArgs),
    /// Delete links (their short URLs answer 410 from then on)
    #[command(visible_alias = "rm")]
    Delete(DeleteArgs),
    /// Clicks of one link: totals, countries, devices, browsers, sources
    Stats(StatsArgs),
    /// The link's QR code as SVG or PNG
    Qr(QrArgs),
    /// Create up to 1000 links from CSV (header long_url,alias,title,tags,expires_at)
    Import(ImportArgs),
    /// Every link as CSV or JSON
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct CodeArg {
    /// Short code
    pub code: String,
}

#[derive(Debug, Args, Default)]
pub struct UtmArgs {
    #[arg(long, value_name = "SOURCE")]
    pub utm_source: Option<String>,
    #[arg(long, value_name = "MEDIUM")]
    pub utm_medium: Option<String>,
    #[arg(long, value_name = "CAMPAIGN")]
    pub utm_campaign: Option<String>,
    #[arg(long, value_name = "TERM")]
    pub utm_term: Option<String>,
    #[arg(long, value_name = "CONTENT")]
    pub utm_content: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct CreateArgs {
    /// Destination (http or https)
    pub long_url: String,
    /// Custom short code (3 to 64 of A-Z a-z 0-9 _ -)
    #[arg(long, short = 'a')]
    pub alias: Option<String>,
    #[arg(long, short = 't')]
    pub title: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Tag (repeat, or separate with commas)
    #[arg(long = "tag", value_delimiter = ',', value_name = "TAG")]
    pub tags: Vec<String>,
    /// Expiry: a time (2027-01-31, 2027-01-31T12:00:00Z) or a duration from now (90m, 12h, 7d, 2w)
    #[arg(long, value_name = "WHEN")]
    pub expires: Option<String>,
    /// After this many human clicks the link answers like an expired one
    #[arg(long, value_name = "N")]
    pub max_visits: Option<i64>,
    /// Where visitors go once the link expired or reached --max-visits
    #[arg(long, value_name = "URL")]
    pub expired_url: Option<String>,
    /// Read a password visitors must enter from the first line of stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Do not append the short URL's query string to the destination
    #[arg(long)]
    pub no_forward_query: bool,
    /// Anyone may fetch the QR code at <short URL>/qr
    #[arg(long)]
    pub public_qr: bool,
    /// Redirect rules as a JSON array, e.g. '[{"long_url":"https://m.example","device":"ios"}]'
    #[arg(long, value_name = "JSON")]
    pub rules: Option<String>,
    #[command(flatten)]
    pub utm: UtmArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Order {
    /// Newest first
    Created,
    /// Most clicked first
    Clicks,
}

#[derive(Debug, Args, Default)]
pub struct ListArgs {
    /// Text searched in the code, the destination and the title
    #[arg(long, short = 'q')]
    pub search: Option<String>,
    /// Only links carrying every tag given (repeat, or separate with commas)
    #[arg(long = "tag", value_delimiter = ',', value_name = "TAG")]
    pub tags: Vec<String>,
    /// Created at or after (a time, or a duration ago such as 7d)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Created before (a time, or a duration ago)
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    #[arg(long, value_enum)]
    pub order: Option<Order>,
    /// Links per page, 1 to 100
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Continue after a page (the cursor a previous list printed)
    #[arg(long, conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Fetch every page
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args, Default)]
pub struct EditArgs {
    /// Short code
    pub code: String,
    /// New destination
    #[arg(long, value_name = "URL")]
    pub long_url: Option<String>,
    #[arg(long, conflicts_with = "no_title")]
    pub title: Option<String>,
    /// Remove the title
    #[arg(long)]
    pub no_title: bool,
    #[arg(long, conflicts_with = "no_description")]
    pub description: Option<String>,
    #[arg(long)]
    pub no_description: bool,
    /// Replace the tags (repeat, or separate with commas)
    #[arg(
        long = "tag",
        value_delimiter = ',',
        value_name = "TAG",
        conflicts_with = "no_tags"
    )]
    pub tags: Vec<String>,
    /// Remove every tag
    #[arg(long)]
    pub no_tags: bool,
    /// New expiry: a time or a duration from now
    #[arg(long, value_name = "WHEN", conflicts_with = "no_expiry")]
    pub expires: Option<String>,
    /// Never expire
    #[arg(long)]
    pub no_expiry: bool,
    #[arg(long, value_name = "N", conflicts_with = "no_max_visits")]
    pub max_visits: Option<i64>,
    /// Remove the visit limit
    #[arg(long)]
    pub no_max_visits: bool,
    #[arg(long, value_name = "URL", conflicts_with = "no_expired_url")]
    pub expired_url: Option<String>,
    #[arg(long)]
    pub no_expired_url: bool,
    /// Read a new password from the first line of stdin
    #[arg(long, conflicts_with = "no_password")]
    pub password_stdin: bool,
    /// Remove the password
    #[arg(long)]
    pub no_password: bool,
    /// Append the short URL's query string to the destination
    #[arg(long, value_name = "BOOL")]
    pub forward_query: Option<bool>,
    /// Anyone may fetch the QR code at <short URL>/qr
    #[arg(long, value_name = "BOOL")]
    pub public_qr: Option<bool>,
    /// Replace the redirect rules with this JSON array ('[]' removes them)
    #[arg(long, value_name = "JSON")]
    pub rules: Option<String>,
    #[command(flatten)]
    pub utm: UtmArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Short codes
    #[arg(required = true)]
    pub codes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

#[derive(Debug, Args, Default)]
pub struct RangeArgs {
    /// Start: a time, or a duration ago such as 7d (default 30 days ago)
    #[arg(long, value_name = "WHEN")]
    pub from: Option<String>,
    /// End: a time, or a duration ago (default now)
    #[arg(long, value_name = "WHEN")]
    pub to: Option<String>,
    /// Entries per breakdown, 1 to 100 (default 10)
    #[arg(long, value_name = "N")]
    pub top: Option<u32>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Short code
    pub code: String,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Series bucket (default hour up to 2 days, else day)
    #[arg(long, value_enum)]
    pub bucket: Option<Bucket>,
    /// Breakdowns count people only
    #[arg(long)]
    pub exclude_bots: bool,
    /// Also print the time series
    #[arg(long)]
    pub series: bool,
}

#[derive(Debug, Args)]
pub struct AccountStatsArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    /// Also print the daily series
    #[arg(long)]
    pub series: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QrFormat {
    Svg,
    Png,
}

#[derive(Debug, Args)]
pub struct QrArgs {
    /// Short code
    pub code: String,
    /// Image format (default: from the output file's extension, else svg)
    #[arg(long, value_enum)]
    pub format: Option<QrFormat>,
    /// Width in pixels, 64 to 2048 (default 300)
    #[arg(long, value_name = "PX")]
    pub size: Option<u32>,
    /// Write to this file instead of stdout (`-` is stdout)
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// CSV file (`-` reads stdin); tags separated by | or spaces, expires_at in RFC 3339
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Default: from the output file's extension, else json with --json, else csv
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,
    /// Write to this file instead of stdout (`-` is stdout)
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// url-api base URL to save (default: the --server, SHORTENER_URL or saved one)
    #[arg(value_name = "URL")]
    pub url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the config file (API key shortened)
    Show,
    /// Print the config file's path
    Path,
    /// Set `url` or `api_key`
    Set { key: String, value: String },
    /// Remove `url` or `api_key`
    Unset { key: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn completions_cover_every_subcommand() {
        let mut script = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "shortener",
            &mut script,
        );
        let script = String::from_utf8(script).unwrap();
        for word in [
            "links",
            "create",
            "edit",
            "qr",
            "--max-visits",
            "--no-expiry",
            "login",
        ] {
            assert!(script.contains(word), "{word} missing");
        }
    }

    #[test]
    fn tags_split_on_commas_and_repeat() {
        let cli = Cli::parse_from([
            "shortener",
            "links",
            "create",
            "https://e.com",
            "--tag",
            "a,b",
            "--tag",
            "c",
        ]);
        let Command::Links(LinksCommand::Create(args)) = cli.command else {
            panic!("create");
        };
        assert_eq!(args.tags, ["a", "b", "c"]);
    }

    #[test]
    fn opposite_edit_options_conflict() {
        for pair in [
            ["--title", "x", "--no-title"].as_slice(),
            &["--expires", "7d", "--no-expiry"],
            &["--tag", "a", "--no-tags"],
            &["--password-stdin", "--no-password"],
        ] {
            let mut argv = vec!["shortener", "links", "edit", "abc"];
            argv.extend_from_slice(pair);
            assert!(Cli::try_parse_from(argv).is_err(), "{pair:?}");
        }
    }
}

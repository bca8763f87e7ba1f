//! Configuration loading.
//!
//! Every binary declares its settings as clap arguments backed by environment variables
//! (so `--help` documents each one with its default). A file of `KEY=VALUE` lines, named by
//! `SHORTENER_CONFIG_FILE` (a mounted ConfigMap, a local `.env`), may supply the same
//! variables; anything already set in the environment wins over the file.

use std::path::{Path, PathBuf};

/// Names the optional `KEY=VALUE` file read before the command line is parsed.
pub const CONFIG_FILE_ENV: &str = "SHORTENER_CONFIG_FILE";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `problem` never quotes the line: its value may be a secret.
    #[error("{path}:{line}: expected KEY=VALUE: {problem}")]
    Syntax {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// Parses `KEY=VALUE` lines. Blank lines and `#` comments are skipped, an optional
/// `export ` prefix is accepted, and a value may be wrapped in single or double quotes.
/// On a malformed line returns its 1-based number and what is wrong with it, without its
/// value (the file usually holds passwords).
pub fn parse_env_lines(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((idx + 1, "the line has no '='".to_string()));
        };
        let key = key.trim();
        let valid_key = !key.is_empty()
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !key.starts_with(|c: char| c.is_ascii_digit());
        if !valid_key {
            return Err((idx + 1, format!("{key:?} is not a variable name")));
        }
        let value = value.trim();
        let value = unquote(value, '"')
            .or_else(|| unquote(value, '\''))
            .unwrap_or(value);
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

fn unquote(value: &str, quote: char) -> Option<&str> {
    value
        .strip_prefix(quote)
        .and_then(|v| v.strip_suffix(quote))
}

/// Reads the file and sets each variable that the environment does not already have.
/// Returns how many variables it set. Must run before any other thread is started.
pub fn load_env_file(path: &Path) -> Result<usize, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let pairs = parse_env_lines(&text).map_err(|(line, problem)| ConfigError::Syntax {
        path: path.to_path_buf(),
        line,
        problem,
    })?;
    let mut set = 0;
    for (key, value) in pairs {
        if std::env::var_os(&key).is_none() {
            std::env::set_var(&key, value);
            set += 1;
        }
    }
    Ok(set)
}

/// Loads the config file named by `SHORTENER_CONFIG_FILE` (if any), then parses the command
/// line. Call from a synchronous `main` before the async runtime starts.
pub fn parse<T: clap::Parser>() -> Result<T, ConfigError> {
    if let Some(path) = std::env::var_os(CONFIG_FILE_ENV) {
        load_env_file(Path::new(&path))?;
    }
    Ok(T::parse())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_quotes_and_export() {
        let text = "# comment\n\nexport A=1\nB = \"two words\"\nC='x=y'\nD=\n";
        let pairs = parse_env_lines(text).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x=y".into()),
                ("D".into(), "".into()),
            ]
        );
    }

    #[test]
    fn rejects_lines_without_equals_or_bad_keys() {
        assert_eq!(
            parse_env_lines("A=1\nsecret-value\n"),
            Err((2, "the line has no '='".into()))
        );
        assert_eq!(
            parse_env_lines("1A=1"),
            Err((1, "\"1A\" is not a variable name".into()))
        );
        assert_eq!(
            parse_env_lines("A-B=secret-value"),
            Err((1, "\"A-B\" is not a variable name".into()))
        );
    }

    #[test]
    fn environment_wins_over_file() {
        let dir = std::env::temp_dir().join(format!("cfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("env");
        std::fs::write(
            &file,
            "SHORTENER_CFG_TEST_SET=from-file\nSHORTENER_CFG_TEST_NEW=new\n",
        )
        .unwrap();
        std::env::set_var("SHORTENER_CFG_TEST_SET", "from-env");
        let n = load_env_file(&file).unwrap();
        assert_eq!(n, 1);
        assert_eq!(std::env::var("SHORTENER_CFG_TEST_SET").unwrap(), "from-env");
        assert_eq!(std::env::var("SHORTENER_CFG_TEST_NEW").unwrap(), "new");
        let missing = load_env_file(&dir.join("missing")).unwrap_err();
        assert!(missing.to_string().contains("cannot read config file"));
    }
}

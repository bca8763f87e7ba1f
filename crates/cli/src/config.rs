//! Where the API URL and key come from: the `--server` flag, then the environment
//! (SHORTENER_URL, SHORTENER_API_KEY), then the config file
//! (`$XDG_CONFIG_HOME/shortener/config.toml`, else `~/.config/shortener/config.toml`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::ConfigError;

pub const URL_VAR: &str = "SHORTENER_URL";
pub const KEY_VAR: &str = "SHORTENER_API_KEY";
pub const CONFIG_VAR: &str = "SHORTENER_CONFIG";

/// The config file's contents.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// The variables of the environment that matter here.
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub url: Option<String>,
    pub api_key: Option<String>,
    pub config: Option<String>,
    pub xdg_config_home: Option<String>,
    pub home: Option<String>,
}

impl Env {
    pub fn from_process() -> Self {
        // Empty counts as unset, as `SHORTENER_API_KEY= shortener ...` means "none".
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Self {
            url: var(URL_VAR),
            api_key: var(KEY_VAR),
            config: var(CONFIG_VAR),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            home: var("HOME"),
        }
    }
}

/// What every API call needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Ends with `/`, so relative joins keep a path prefix (`https://host/shortener/`).
    pub base_url: Url,
    pub api_key: String,
}

/// The config file: `--config`, else SHORTENER_CONFIG, else the XDG location.
pub fn config_path(flag: Option<&Path>, env: &Env) -> Result<PathBuf, ConfigError> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = &env.config {
        return Ok(PathBuf::from(path));
    }
    // The XDG spec ignores a relative XDG_CONFIG_HOME.
    let dir = match (&env.xdg_config_home, &env.home) {
        (Some(xdg), _) if Path::new(xdg).is_absolute() => PathBuf::from(xdg),
        (_, Some(home)) => Path::new(home).join(".config"),
        _ => return Err(ConfigError::NoConfigDir),
    };
    Ok(dir.join("shortener").join("config.toml"))
}

/// Flag over environment over file, for each of the two settings.
pub fn resolve(
    flag_url: Option<&str>,
    env: &Env,
    file: &FileConfig,
) -> Result<Settings, ConfigError> {
    let url = flag_url
        .map(str::to_owned)
        .or_else(|| env.url.clone())
        .or_else(|| file.url.clone())
        .ok_or(ConfigError::MissingUrl)?;
    let api_key = env
        .api_key
        .clone()
        .or_else(|| file.api_key.clone())
        .filter(|k| !k.trim().is_empty())
        .ok_or(ConfigError::MissingKey)?;
    Ok(Settings {
        base_url: parse_base_url(&url)?,
        api_key: api_key.trim().to_owned(),
    })
}

/// An http(s) URL without query or fragment, normalized to end with `/`.
pub fn parse_base_url(raw: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidUrl {
        url: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let mut url = Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must be http or https"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// The file's settings; a missing file is an empty one.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(e) => {
            return Err(ConfigError::Unreadable {
                path: path.to_owned(),
                reason: e.to_string(),
            })
        }
    };
    parse(&text).map_err(|reason| ConfigError::Unreadable {
        path: path.to_owned(),
        reason,
    })
}

pub fn parse(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| e.message().to_owned())
}

pub fn render(config: &FileConfig) -> String {
    toml::to_string(config).expect("two optional strings always serialize")
}

/// Sets `key` (`url` or `api_key`) to `value`, or clears it when `value` is `None`.
pub fn set(config: &mut FileConfig, key: &str, value: Option<String>) -> Result<(), ConfigError> {
    match key {
        "url" => {
            if let Some(v) = &value {
                parse_base_url(v)?;
            }
            config.url = value;
        }
        "api_key" | "api-key" => config.api_key = value,
        other => return Err(ConfigError::UnknownKey(other.to_owned())),
    }
    Ok(())
}

/// The file as `config show` prints it: the key reduced to its first characters.
pub fn redacted(config: &FileConfig) -> FileConfig {
    FileConfig {
        url: config.url.clone(),
        api_key: config.api_key.as_deref().map(redact),
    }
}

pub fn redact(key: &str) -> String {
    let shown: String = key.chars().take(4).collect();
    format!("{shown}… ({} characters)", key.chars().count())
}

/// Writes the file readable by its owner only (it holds an API key), creating its
/// directory; replaces the old file in one rename so a crash leaves one or the other.
pub fn save(path: &Path, config: &FileConfig) -> Result<(), ConfigError> {
    let unwritable = |source| ConfigError::Unwritable {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(unwritable)?;
    }
    let tmp = path.with_extension("toml.tmp");
    write_private(&tmp, render(config).as_bytes()).map_err(unwritable)?;
    std::fs::rename(&tmp, path).map_err(unwritable)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            home: Some("/home/ada".into()),
            ..Env::default()
        }
    }

    #[test]
    fn config_path_follows_flag_then_variable_then_xdg_then_home() {
        assert_eq!(
            config_path(None, &env()).unwrap(),
            Path::new("/home/ada/.config/shortener/config.toml")
        );
        let xdg = Env {
            xdg_config_home: Some("/xdg".into()),
            ..env()
        };
        assert_eq!(
            config_path(None, &xdg).unwrap(),
            Path::new("/xdg/shortener/config.toml")
        );
        let relative = Env {
            xdg_config_home: Some("rel".into()),
            ..env()
        };
        assert_eq!(
            config_path(None, &relative).unwrap(),
            Path::new("/home/ada/.config/shortener/config.toml"),
            "a relative XDG_CONFIG_HOME is ignored"
        );
        let var = Env {
            config: Some("/etc/s.toml".into()),
            ..xdg.clone()
        };
        assert_eq!(config_path(None, &var).unwrap(), Path::new("/etc/s.toml"));
        assert_eq!(
            config_path(Some(Path::new("/flag.toml")), &var).unwrap(),
            Path::new("/flag.toml")
        );
        assert!(matches!(
            config_path(None, &Env::default()),
            Err(ConfigError::NoConfigDir)
        ));
    }

    #[test]
    fn flag_beats_environment_beats_file() {
        let file = FileConfig {
            url: Some("https://file.example".into()),
            api_key: Some("file-key".into()),
        };
        let s = resolve(None, &Env::default(), &file).unwrap();
        assert_eq!(s.base_url.as_str(), "https://file.example/");
        assert_eq!(s.api_key, "file-key");

        let env = Env {
            url: Some("https://env.example/prefix".into()),
            api_key: Some("env-key".into()),
            ..Env::default()
        };
        let s = resolve(None, &env, &file).unwrap();
        assert_eq!(s.base_url.as_str(), "https://env.example/prefix/");
        assert_eq!(s.api_key, "env-key");

        let s = resolve(Some("http://localhost:8080"), &env, &file).unwrap();
        assert_eq!(s.base_url.as_str(), "http://localhost:8080/");
    }

    #[test]
    fn missing_or_bad_settings_say_how_to_fix_them() {
        let none = FileConfig::default();
        let e = resolve(None, &Env::default(), &none).unwrap_err();
        assert!(matches!(e, ConfigError::MissingUrl));
        assert!(e.to_string().contains("SHORTENER_URL"), "{e}");
        let e = resolve(Some("https://x"), &Env::default(), &none).unwrap_err();
        assert!(matches!(e, ConfigError::MissingKey));
        assert!(e.to_string().contains("SHORTENER_API_KEY"), "{e}");
        let blank_key = FileConfig {
            api_key: Some("  ".into()),
            ..none.clone()
        };
        assert!(matches!(
            resolve(Some("https://x"), &Env::default(), &blank_key),
            Err(ConfigError::MissingKey)
        ));
        for bad in ["ftp://x", "not a url", "https://x/?q=1", "https://x/#f"] {
            assert!(
                matches!(parse_base_url(bad), Err(ConfigError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn file_round_trips_and_rejects_unknown_keys() {
        let mut config = FileConfig::default();
        set(&mut config, "url", Some("https://sho.rt".into())).unwrap();
        set(&mut config, "api_key", Some("k-123".into())).unwrap();
        let text = render(&config);
        assert_eq!(text, "url = \"https://sho.rt\"\napi_key = \"k-123\"\n");
        assert_eq!(parse(&text).unwrap(), config);
        set(&mut config, "api_key", None).unwrap();
        assert_eq!(render(&config), "url = \"https://sho.rt\"\n");
        assert!(matches!(
            set(&mut config, "colour", Some("x".into())),
            Err(ConfigError::UnknownKey(_))
        ));
        assert!(matches!(
            set(&mut config, "url", Some("gopher://x".into())),
            Err(ConfigError::InvalidUrl { .. })
        ));
        assert!(parse("token = \"x\"").is_err(), "unknown keys are refused");
        assert!(parse("url = ").is_err());
        assert_eq!(redact("abcdefgh"), "abcd… (8 characters)");
    }

    #[cfg(unix)]
    #[test]
    fn saved_file_is_private_and_a_missing_one_is_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("shortener-cli-cfg-{}", std::process::id()));
        let path = dir.join("nested").join("config.toml");
        assert_eq!(load(&path).unwrap(), FileConfig::default());
        let config = FileConfig {
            url: Some("https://sho.rt".into()),
            api_key: Some("secret".into()),
        };
        save(&path, &config).unwrap();
        assert_eq!(load(&path).unwrap(), config);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

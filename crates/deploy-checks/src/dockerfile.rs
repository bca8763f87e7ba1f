//! A small Dockerfile reader: build stages and their instructions, enough to check what a
//! stage builds from, copies and runs as.

use crate::{Error, Result};

/// One instruction, keyword upper-cased, arguments with line continuations joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub keyword: String,
    pub args: String,
}

/// One `FROM` stage.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Image or earlier stage it builds on.
    pub base: String,
    /// `AS <name>`, if any.
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// Arguments of every instruction with `keyword`.
    pub fn args_of<'a>(&'a self, keyword: &str) -> impl Iterator<Item = &'a str> + 'a {
        let keyword = keyword.to_string();
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
            .map(|i| i.args.as_str())
    }

    /// The last argument of `keyword` (the one that takes effect, e.g. USER, ENTRYPOINT).
    pub fn last(&self, keyword: &str) -> Option<&str> {
        self.args_of(keyword).last()
    }
}

/// The parsed file: global `ARG`s before the first `FROM`, then the stages.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub global_args: Vec<String>,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    pub fn parse(text: &str) -> Result<Self> {
        let mut logical = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
                continue;
            }
            // Comment lines inside a continued instruction are dropped by Docker too.
            if trimmed.starts_with('#') {
                continue;
            }
            if let Some(body) = trimmed.strip_suffix('\\') {
                current.push_str(body);
                current.push(' ');
            } else {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            logical.push(current);
        }

        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for line in logical {
            let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            let keyword = keyword.to_ascii_uppercase();
            let args = args.split_whitespace().collect::<Vec<_>>().join(" ");
            if keyword == "FROM" {
                let words: Vec<&str> = args
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let base = words.first().ok_or_else(|| Error::Parse {
                    what: "Dockerfile".into(),
                    message: "FROM without an image".into(),
                })?;
                let name = match words.as_slice() {
                    [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => Some(name.to_string()),
                    [_] => None,
                    _ => {
                        return Err(Error::Parse {
                            what: "Dockerfile".into(),
                            message: format!("cannot read `FROM {args}`"),
                        })
                    }
                };
                stages.push(Stage {
                    base: base.to_string(),
                    name,
                    instructions: Vec::new(),
                });
            } else if let Some(stage) = stages.last_mut() {
                stage.instructions.push(Instruction { keyword, args });
            } else if keyword == "ARG" {
                global_args.push(args);
            } else {
                return Err(Error::Parse {
                    what: "Dockerfile".into(),
                    message: format!("{keyword} before the first FROM"),
                });
            }
        }
        Ok(Self {
            global_args,
            stages,
        })
    }

    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name.as_deref() == Some(name))
    }

    /// The value of a global `ARG NAME=value`.
    pub fn global_arg(&self, name: &str) -> Option<&str> {
        self.global_args.iter().find_map(|a| {
            let (k, v) = a.split_once('=')?;
            (k == name).then(|| v.trim_matches('"'))
        })
    }

    /// `base` with `${ARG}` / `$ARG` references to global ARGs substituted.
    pub fn resolve(&self, text: &str) -> String {
        let mut out = text.to_string();
        for a in &self.global_args {
            if let Some((k, v)) = a.split_once('=') {
                let v = v.trim_matches('"');
                out = out
                    .replace(&format!("${{{k}}}"), v)
                    .replace(&format!("${k}"), v);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stages_continuations_and_global_args() {
        let df = Dockerfile::parse(
            "# syntax=docker/dockerfile:1\nARG V=1.0\nFROM img:${V} AS a\nRUN one \\\n  # note\n  two\nFROM a\nUSER 1:1\n",
        )
        .unwrap();
        assert_eq!(df.global_arg("V"), Some("1.0"));
        assert_eq!(df.resolve(&df.stages[0].base), "img:1.0");
        assert_eq!(df.stage("a").unwrap().last("RUN"), Some("one two"));
        assert_eq!(df.stages[1].name, None);
        assert_eq!(df.stages[1].last("USER"), Some("1:1"));
        assert!(Dockerfile::parse("RUN x\n").is_err());
    }
}

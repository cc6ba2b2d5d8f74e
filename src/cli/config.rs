//! Configuration file for `dvsigner signer` and `dvsigner combiner` (`--config FILE`).
//!
//! The file is a flat YAML mapping (TOML when the name ends in `.toml`) whose keys are the long
//! option names of the subcommand, in kebab-case: `listen: 127.0.0.1:9000`,
//! `keystores: /keys`, booleans as `true`/`false`, options that may repeat as lists. The
//! command-line parser stays the single source of option names, types and defaults: the file is
//! turned into `--key=value` arguments inserted right after the subcommand name, and clap parses
//! the result. So a new flag is settable in the file the day it is added, with no second list to
//! keep in step: every option of `signer` and `combiner` is settable in the config file.
//!
//! # Invariants
//! - Precedence is command line > environment variable > config file > built-in default. A key of
//!   the file is dropped when its option is on the command line, when the option's environment
//!   variable (`env = "DVSIGNER_…"` in the clap definition) is set, or when the option conflicts
//!   with one given on the command line or in the environment.
//! - The keys `config`, `check-config`, `help` and `version` are refused in a file.
//! - Every problem with a file (unreadable, not a mapping, unknown key, wrong type, value the
//!   option's parser refuses) is an [`Error`] naming the file and the key; nothing here panics.
//! - Effective settings ([`Settings`], printed by `--check-config`) show paths and values, never
//!   secret contents: secrets are only ever referenced by path, and URL credentials
//!   (`postgres://user:password@…`) are redacted.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;

/// Subcommands that accept `--config`.
pub const SUBCOMMANDS: [&str; 2] = ["signer", "combiner"];

/// Long options that name the file or control the check and so cannot appear inside a file.
const RESERVED_KEYS: [&str; 4] = ["config", "check-config", "help", "version"];

/// Configuration-file errors. Each names the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("config file {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid YAML / TOML.
    #[error("config file {path}: invalid {format}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// `YAML` or `TOML`.
        format: &'static str,
        /// The parser's message (with line and column).
        message: String,
    },
    /// The top level of the file is not a mapping of option names to values.
    #[error("config file {path}: expected a mapping of option names to values at the top level")]
    NotAMapping {
        /// The file.
        path: PathBuf,
    },
    /// A key that is not a string.
    #[error("config file {path}: key {key} is not a string")]
    KeyNotString {
        /// The file.
        path: PathBuf,
        /// The key, as YAML.
        key: String,
    },
    /// A key that is no long option of the subcommand.
    #[error("config file {path}: unknown key `{key}` for `dvsigner {subcommand}` (keys are the long option names of `dvsigner {subcommand} --help`, without the leading dashes)")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// `signer` or `combiner`.
        subcommand: String,
    },
    /// A key that only makes sense on the command line.
    #[error("config file {path}: key `{key}` is not allowed in a config file (command line only)")]
    ReservedKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A value of the wrong YAML/TOML type for its option.
    #[error("config file {path}: key `{key}`: expected {expected}, found {found}")]
    WrongType {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What the option takes.
        expected: &'static str,
        /// What the file has.
        found: &'static str,
    },
    /// A value the option's parser refused (bad address, number out of range, unknown choice).
    #[error("config file {path}: key `{key}`: invalid value {value:?}: {reason}")]
    InvalidValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The value from the file (never a secret: secrets are referenced by path).
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// `--config` given to a subcommand that has no config file.
    #[error("--config is only accepted by `dvsigner signer` and `dvsigner combiner`, not `{subcommand}`")]
    NotForSubcommand {
        /// The subcommand given.
        subcommand: String,
    },
    /// `--config` without a file name.
    #[error("--config needs a file name")]
    MissingPath,
    /// A setting that parses but cannot work (found by `--check-config` and at start-up).
    #[error("invalid setting `{key}`: {reason}")]
    Setting {
        /// The option.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// The command line after merging a config file into it.
#[derive(Debug, Clone, Default)]
pub struct Expanded {
    /// Arguments for clap (program name first), file options inserted after the subcommand.
    pub args: Vec<OsString>,
    /// The config file, when `--config` was given to `signer` or `combiner`.
    pub file: Option<PathBuf>,
    /// Keys of the file that went into [`Expanded::args`] (with their values as written there).
    pub from_file: Vec<(String, Vec<String>)>,
    /// Keys of the file that were dropped, and why.
    pub overridden: Vec<(String, Override)>,
}

/// Why a key of the config file was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Override {
    /// The option is on the command line.
    CommandLine,
    /// The option's environment variable is set.
    Environment(String),
    /// The option conflicts with this one, given on the command line or in the environment.
    Conflict(String),
    /// A boolean set to `false` (the same as leaving the flag out).
    False,
}

/// Where an effective setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The command line.
    CommandLine,
    /// The named environment variable.
    Environment(String),
    /// The config file.
    File,
    /// The built-in default.
    Default,
}

/// One effective option value of a parsed `signer`/`combiner` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Long option name.
    pub key: String,
    /// Its values (one for most options; URL credentials redacted).
    pub values: Vec<String>,
    /// Where the value came from.
    pub source: Source,
    /// A flag (`true`/`false`) rather than an option taking values.
    pub flag: bool,
}

/// The effective settings printed by `--check-config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `signer` or `combiner`.
    pub subcommand: String,
    /// The config file, if any.
    pub file: Option<PathBuf>,
    /// Options that have a value, in `--help` order.
    pub set: Vec<Setting>,
    /// Options without a value.
    pub unset: Vec<String>,
    /// Keys of the file that were overridden.
    pub overridden: Vec<(String, Override)>,
}

/// Merges the `--config` file (if any) of a `signer`/`combiner` command line into `argv`.
///
/// `cmd` is the root command (it is built here so global options are seen by the
/// subcommands); `env_is_set` says whether an environment variable is set (the process
/// environment in production, a map in tests). Arguments of other subcommands, and command lines
/// clap will reject anyway, come back unchanged for clap to report.
///
/// # Errors
/// Any problem with the file, each naming the file and the key (see [`Error`]).
pub fn expand(
    cmd: &clap::Command,
    argv: Vec<OsString>,
    env_is_set: impl Fn(&str) -> bool,
) -> Result<Expanded, Error> {
    let mut cmd = cmd.clone();
    cmd.build();
    let unchanged = |argv| {
        Ok(Expanded {
            args: argv,
            ..Expanded::default()
        })
    };
    let mut given: Vec<String> = Vec::new();
    let mut config: Option<OsString> = None;
    let mut sub_at = None;
    // The root's options (global ones) up to the subcommand name.
    let mut i = 1;
    while i < argv.len() {
        let Some(t) = argv[i].to_str() else { break };
        if t == "--" {
            break;
        }
        if let Some(long) = t.strip_prefix("--") {
            i += scan_long(&cmd, long, &argv, i, &mut given, &mut config)?;
        } else if !t.starts_with('-') {
            sub_at = Some(i);
            break;
        }
        i += 1;
    }
    let Some(sub_at) = sub_at else {
        return unchanged(argv);
    };
    let sub_name = argv[sub_at].to_string_lossy().into_owned();
    let Some(sub) = cmd.find_subcommand(&sub_name) else {
        return unchanged(argv);
    };
    let mut j = sub_at + 1;
    while j < argv.len() {
        let Some(t) = argv[j].to_str() else {
            j += 1;
            continue;
        };
        if t == "--" {
            break;
        }
        if let Some(long) = t.strip_prefix("--") {
            j += scan_long(sub, long, &argv, j, &mut given, &mut config)?;
        }
        j += 1;
    }
    let Some(config) = config else {
        return unchanged(argv);
    };
    if !SUBCOMMANDS.contains(&sub.get_name()) {
        return Err(Error::NotForSubcommand {
            subcommand: sub.get_name().to_owned(),
        });
    }
    if config.is_empty() {
        return Err(Error::MissingPath);
    }
    let path = PathBuf::from(config);
    let entries = read_file(&path)?;

    // Options present on the command line or through their environment variable.
    let present: Vec<&clap::Arg> = sub
        .get_arguments()
        .filter(|a| {
            a.get_long().is_some_and(|l| given.iter().any(|g| g == l))
                || a.get_env().and_then(OsStr::to_str).is_some_and(&env_is_set)
        })
        .collect();

    let mut out = Expanded {
        file: Some(path.clone()),
        ..Expanded::default()
    };
    let mut fragments: Vec<OsString> = Vec::new();
    for (key, value) in entries {
        if RESERVED_KEYS.contains(&key.as_str()) {
            return Err(Error::ReservedKey { path, key });
        }
        let Some(arg) = sub
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
        else {
            return Err(Error::UnknownKey {
                path,
                key,
                subcommand: sub.get_name().to_owned(),
            });
        };
        let values = values_for(arg, &path, &key, &value)?;
        if let Some(why) = overridden_by(sub, arg, &key, &given, &present, &env_is_set) {
            out.overridden.push((key, why));
            continue;
        }
        match values {
            Values::Flag(true) => {
                fragments.push(format!("--{key}").into());
                out.from_file.push((key, vec!["true".into()]));
            }
            Values::Flag(false) => out.overridden.push((key, Override::False)),
            Values::List(vs) => {
                fragments.extend(vs.iter().map(|v| OsString::from(format!("--{key}={v}"))));
                out.from_file.push((key, vs));
            }
        }
    }
    let mut args = argv;
    let tail = args.split_off(sub_at + 1);
    args.extend(fragments);
    args.extend(tail);
    out.args = args;
    Ok(out)
}

/// Records a `--long[=value]` token; returns how many following tokens it consumed (0 or 1).
fn scan_long(
    cmd: &clap::Command,
    token: &str,
    argv: &[OsString],
    at: usize,
    given: &mut Vec<String>,
    config: &mut Option<OsString>,
) -> Result<usize, Error> {
    let (name, inline) = match token.split_once('=') {
        Some((n, v)) => (n, Some(OsString::from(v))),
        None => (token, None),
    };
    let takes_value = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some(name))
        .is_some_and(|a| a.get_action().takes_values());
    given.push(name.to_owned());
    let (value, used) = match inline {
        Some(v) => (Some(v), 0),
        None if takes_value => (argv.get(at + 1).cloned(), 1),
        None => (None, 0),
    };
    if name == "config" {
        *config = Some(value.ok_or(Error::MissingPath)?);
    }
    Ok(used)
}

/// Why `arg` from the file gives way, if it does.
fn overridden_by(
    sub: &clap::Command,
    arg: &clap::Arg,
    key: &str,
    given: &[String],
    present: &[&clap::Arg],
    env_is_set: &impl Fn(&str) -> bool,
) -> Option<Override> {
    if given.iter().any(|g| g == key) {
        return Some(Override::CommandLine);
    }
    if let Some(env) = arg.get_env().and_then(OsStr::to_str) {
        if env_is_set(env) {
            return Some(Override::Environment(env.to_owned()));
        }
    }
    let conflicts = sub.get_arg_conflicts_with(arg);
    present
        .iter()
        .find(|p| {
            conflicts.iter().any(|c| c.get_id() == p.get_id())
                || sub
                    .get_arg_conflicts_with(p)
                    .iter()
                    .any(|c| c.get_id() == arg.get_id())
        })
        .map(|p| Override::Conflict(p.get_long().unwrap_or_default().to_owned()))
}

/// A file value turned into what clap takes for its option.
enum Values {
    Flag(bool),
    List(Vec<String>),
}

fn values_for(
    arg: &clap::Arg,
    path: &Path,
    key: &str,
    value: &yaml_serde::Value,
) -> Result<Values, Error> {
    let wrong = |expected| Error::WrongType {
        path: path.to_owned(),
        key: key.to_owned(),
        expected,
        found: type_name(value),
    };
    let action = arg.get_action();
    if !action.takes_values() {
        return match value {
            yaml_serde::Value::Bool(b) => Ok(Values::Flag(*b)),
            _ => Err(wrong("true or false")),
        };
    }
    let repeats = matches!(action, clap::ArgAction::Append);
    match value {
        yaml_serde::Value::Sequence(items) if repeats => items
            .iter()
            .map(|v| scalar(v).ok_or_else(|| wrong("a list of strings or numbers")))
            .collect::<Result<Vec<_>, _>>()
            .map(Values::List),
        v => match scalar(v) {
            Some(s) => Ok(Values::List(vec![s])),
            None if repeats => Err(wrong("a string, a number or a list of them")),
            None => Err(wrong("a string or a number")),
        },
    }
}

fn scalar(v: &yaml_serde::Value) -> Option<String> {
    match v {
        yaml_serde::Value::String(s) => Some(s.clone()),
        yaml_serde::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn type_name(v: &yaml_serde::Value) -> &'static str {
    match v {
        yaml_serde::Value::Null => "nothing (null)",
        yaml_serde::Value::Bool(_) => "a boolean",
        yaml_serde::Value::Number(_) => "a number",
        yaml_serde::Value::String(_) => "a string",
        yaml_serde::Value::Sequence(_) => "a list",
        yaml_serde::Value::Mapping(_) => "a mapping",
        yaml_serde::Value::Tagged(_) => "a tagged value",
    }
}

/// Reads the file into (key, value) pairs in file order.
fn read_file(path: &Path) -> Result<Vec<(String, yaml_serde::Value)>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let is_toml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let value: yaml_serde::Value = if is_toml {
        toml::from_str(&text).map_err(|e| Error::Syntax {
            path: path.to_owned(),
            format: "TOML",
            message: e.to_string().trim_end().to_owned(),
        })?
    } else {
        yaml_serde::from_str(&text).map_err(|e| Error::Syntax {
            path: path.to_owned(),
            format: "YAML",
            message: e.to_string(),
        })?
    };
    let mapping = match value {
        yaml_serde::Value::Mapping(m) => m,
        // An empty (or all-comments) YAML file.
        yaml_serde::Value::Null => yaml_serde::Mapping::new(),
        _ => {
            return Err(Error::NotAMapping {
                path: path.to_owned(),
            })
        }
    };
    mapping
        .into_iter()
        .map(|(k, v)| match k {
            yaml_serde::Value::String(k) => Ok((k, v)),
            other => Err(Error::KeyNotString {
                path: path.to_owned(),
                key: yaml_serde::to_string(&other)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            }),
        })
        .collect()
}

/// Turns a clap error about an option that came from the file into an [`Error`] naming the file
/// and the key; `None` when the error is not about a file option.
pub fn file_error(expanded: &Expanded, error: &clap::Error) -> Option<Error> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let path = expanded.file.as_ref()?;
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let (key, values) = expanded.from_file.iter().find(|(k, _)| k == long)?;
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.clone(),
        _ => values.join(","),
    };
    let reason = match std::error::Error::source(error) {
        Some(source) => source.to_string(),
        None => match error.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => format!("expected one of {}", valid.join(", ")),
            _ => "not accepted".to_owned(),
        },
    };
    Some(Error::InvalidValue {
        path: path.clone(),
        key: key.clone(),
        value: redact(&value),
        reason,
    })
}

/// The effective settings of a parsed subcommand (`sub` its built definition, `matches` its
/// matches), labelled with where each came from.
pub fn settings(sub: &clap::Command, matches: &clap::ArgMatches, expanded: &Expanded) -> Settings {
    let mut out = Settings {
        subcommand: sub.get_name().to_owned(),
        file: expanded.file.clone(),
        overridden: expanded.overridden.clone(),
        ..Settings::default()
    };
    for arg in sub.get_arguments() {
        let Some(key) = arg.get_long() else { continue };
        if RESERVED_KEYS.contains(&key) {
            continue;
        }
        let id = arg.get_id().as_str();
        // `value_source` insists on known ids (debug builds panic otherwise): ask only for
        // the ones that matched.
        if !matches.ids().any(|i| i.as_str() == id) {
            out.unset.push(key.to_owned());
            continue;
        }
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) if expanded.from_file.iter().any(|(k, _)| k == key) => {
                Source::File
            }
            Some(ValueSource::CommandLine) => Source::CommandLine,
            Some(ValueSource::EnvVariable) => Source::Environment(
                arg.get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            Some(ValueSource::DefaultValue) => Source::Default,
            _ => {
                out.unset.push(key.to_owned());
                continue;
            }
        };
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|vs| vs.map(|v| redact(&v.to_string_lossy())).collect())
            .unwrap_or_default();
        // A flag left at its default `false` is as good as unset.
        if !arg.get_action().takes_values() && source == Source::Default {
            out.unset.push(key.to_owned());
            continue;
        }
        out.set.push(Setting {
            key: key.to_owned(),
            values,
            source,
            flag: !arg.get_action().takes_values(),
        });
    }
    out
}

impl fmt::Display for Settings {
    /// A YAML document that is itself a valid config file, with the source of each value in a
    /// comment.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# dvsigner {}: effective settings", self.subcommand)?;
        match &self.file {
            Some(p) => writeln!(f, "# config file: {}", p.display())?,
            None => writeln!(f, "# config file: none")?,
        }
        writeln!(
            f,
            "# precedence: command line > environment variable > config file > default"
        )?;
        for s in &self.set {
            let value = match s.values.as_slice() {
                [one] if s.flag => one.clone(),
                [one] => yaml_scalar(one),
                many => format!(
                    "[{}]",
                    many.iter()
                        .map(|v| yaml_scalar(v))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let source = match &s.source {
                Source::CommandLine => "command line".to_owned(),
                Source::Environment(name) => format!("environment {name}"),
                Source::File => "config file".to_owned(),
                Source::Default => "default".to_owned(),
            };
            writeln!(f, "{}: {value}  # {source}", s.key)?;
        }
        for key in &self.unset {
            writeln!(f, "# {key}: (not set)")?;
        }
        for (key, why) in &self.overridden {
            let why = match why {
                Override::CommandLine => "given on the command line".to_owned(),
                Override::Environment(name) => format!("{name} is set"),
                Override::Conflict(other) => format!("conflicts with --{other}"),
                Override::False => "false".to_owned(),
            };
            writeln!(f, "# config file key `{key}` not used: {why}")?;
        }
        Ok(())
    }
}

/// Plain scalars stay plain; anything YAML could read differently is double-quoted.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:-@…".contains(c))
        && !s.starts_with(['-', ':', '@'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~"
        );
    if plain {
        s.to_owned()
    } else {
        serde_json::Value::String(s.to_owned()).to_string()
    }
}

pub use crate::slashing::redact;

/// Checks a `--network` value: a built-in name or a readable consensus config YAML.
///
/// # Errors
/// [`Error::Setting`] naming `network`.
pub fn check_network(network: &str) -> Result<(), Error> {
    crate::signing::Network::from_name_or_path(network)
        .map(|_| ())
        .map_err(|e| Error::Setting {
            key: "network".into(),
            reason: e.to_string(),
        })
}

/// Checks the form of a `--slashing-db` URL (`sqlite:PATH` or `postgres://…`) without opening it.
///
/// # Errors
/// [`Error::Setting`] naming `slashing-db` (the URL's credentials redacted).
pub fn check_slashing_db(url: &str) -> Result<(), Error> {
    let bad = |reason: &str| Error::Setting {
        key: "slashing-db".into(),
        reason: format!("{}: {reason}", redact(url)),
    };
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        return if rest.is_empty() {
            Err(bad("no host"))
        } else {
            crate::slashing::check_postgres_url(url)
                .map(|_| ())
                .map_err(|reason| bad(&reason))
        };
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() {
        return Err(bad("no database path"));
    }
    if path.contains("://") {
        return Err(bad("expected sqlite:PATH or postgres://…"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn test_cmd() -> Command {
        Command::new("dvsigner")
            .arg(
                Arg::new("log_format")
                    .long("log-format")
                    .global(true)
                    .default_value("text"),
            )
            .arg(Arg::new("config").long("config").global(true))
            .subcommand(
                Command::new("signer")
                    .arg(Arg::new("listen").long("listen"))
                    .arg(
                        Arg::new("tls_key")
                            .long("tls-key")
                            .env("DVSIGNER_T_TLS_KEY"),
                    )
                    .arg(
                        Arg::new("insecure_http")
                            .long("insecure-http")
                            .action(ArgAction::SetTrue)
                            .conflicts_with("tls_key"),
                    )
                    .arg(Arg::new("peer").long("peer").action(ArgAction::Append)),
            )
            .subcommand(Command::new("split"))
    }

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn run(argv: &[&str], env: &[&str]) -> Result<Expanded, Error> {
        let argv = argv.iter().map(OsString::from).collect();
        expand(&test_cmd(), argv, |n| env.contains(&n))
    }

    fn strings(e: &Expanded) -> Vec<String> {
        e.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn file_options_go_after_the_subcommand() {
        let d = tempfile::tempdir().expect("tmp");
        let p = file(
            &d,
            "c.yaml",
            "listen: 0.0.0.0:1\ninsecure-http: true\npeer: [a, b]\nlog-format: json\n",
        );
        let p = p.to_str().expect("utf8");
        let e = run(&["dvsigner", "signer", "--config", p, "--x"], &[]).expect("expand");
        assert_eq!(
            strings(&e),
            [
                "dvsigner",
                "signer",
                "--listen=0.0.0.0:1",
                "--insecure-http",
                "--peer=a",
                "--peer=b",
                "--log-format=json",
                "--config",
                p,
                "--x"
            ]
        );
        assert!(e.overridden.is_empty());
    }

    #[test]
    fn command_line_env_and_conflicts_win() {
        let d = tempfile::tempdir().expect("tmp");
        let p = file(
            &d,
            "c.yml",
            "listen: 0.0.0.0:1\ntls-key: /f/key.pem\ninsecure-http: true\n",
        );
        let p = p.to_str().expect("utf8");
        // --listen on the command line, the TLS key from the environment; insecure-http
        // conflicts with the environment's tls-key and is dropped too.
        let e = run(
            &["dvsigner", "--config", p, "signer", "--listen=9.9.9.9:9"],
            &["DVSIGNER_T_TLS_KEY"],
        )
        .expect("expand");
        assert_eq!(
            strings(&e),
            ["dvsigner", "--config", p, "signer", "--listen=9.9.9.9:9"]
        );
        assert_eq!(
            e.overridden,
            [
                ("listen".to_owned(), Override::CommandLine),
                (
                    "tls-key".to_owned(),
                    Override::Environment("DVSIGNER_T_TLS_KEY".into())
                ),
                (
                    "insecure-http".to_owned(),
                    Override::Conflict("tls-key".into())
                ),
            ]
        );
    }

    #[test]
    fn errors_name_file_and_key() {
        let d = tempfile::tempdir().expect("tmp");
        let cases = [
            ("a.yaml", "lisen: 1\n", "unknown key `lisen`"),
            (
                "b.yaml",
                "insecure-http: yes please\n",
                "key `insecure-http`",
            ),
            (
                "c.yaml",
                "listen: [1, 2]\n",
                "key `listen`: expected a string",
            ),
            ("d.yaml", "listen:\n", "found nothing"),
            ("e.yaml", "config: x.yaml\n", "key `config` is not allowed"),
            ("f.yaml", "- a\n- b\n", "expected a mapping"),
            ("g.yaml", "listen: [\n", "invalid YAML"),
            ("h.toml", "listen = \n", "invalid TOML"),
            (
                "i.toml",
                "[listen]\nx = 1\n",
                "key `listen`: expected a string",
            ),
        ];
        for (name, text, want) in cases {
            let p = file(&d, name, text);
            let ps = p.to_str().expect("utf8");
            let err = run(&["dvsigner", "signer", "--config", ps], &[])
                .expect_err(name)
                .to_string();
            assert!(err.contains(want), "{name}: {err}");
            assert!(err.contains(ps), "{name}: {err}");
        }
        let missing = d.path().join("nope.yaml");
        let err = run(
            &[
                "dvsigner",
                "signer",
                "--config",
                missing.to_str().expect("utf8"),
            ],
            &[],
        )
        .expect_err("missing");
        assert!(matches!(err, Error::Read { .. }), "{err}");
    }

    #[test]
    fn toml_files_are_read_as_toml() {
        let d = tempfile::tempdir().expect("tmp");
        let p = file(
            &d,
            "c.toml",
            "listen = \"1.2.3.4:5\"\ninsecure-http = true\n",
        );
        let e = run(
            &["dvsigner", "signer", "--config", p.to_str().expect("utf8")],
            &[],
        )
        .expect("expand");
        // TOML tables come in key order, not file order; the order does not matter.
        let mut got = strings(&e)[2..4].to_vec();
        got.sort();
        assert_eq!(got, ["--insecure-http", "--listen=1.2.3.4:5"]);
    }

    #[test]
    fn other_subcommands_and_no_config_are_untouched() {
        assert!(matches!(
            run(&["dvsigner", "split", "--config", "x.yaml"], &[]),
            Err(Error::NotForSubcommand { .. })
        ));
        let e = run(&["dvsigner", "signer", "--listen", "--config"], &[]).expect("expand");
        assert_eq!(e.file, None, "--config here is the value of --listen");
        assert!(matches!(
            run(&["dvsigner", "signer", "--config"], &[]),
            Err(Error::MissingPath)
        ));
    }

    #[test]
    fn redaction_and_url_checks() {
        assert_eq!(
            redact("postgres://u:secret@db:5432/x"),
            "postgres://…@db:5432/x"
        );
        assert_eq!(redact("/a/b@c"), "/a/b@c");
        assert_eq!(
            redact("postgres://u:s@db/x?sslmode=verify-full&password=s2&sslkey=/k@1.pem"),
            "postgres://…@db/x?sslmode=verify-full&password=…&sslkey=/k@1.pem"
        );
        assert_eq!(
            redact("postgres://db/x?user=u&PASSWORD=s"),
            "postgres://db/x?user=u&PASSWORD=…"
        );
        assert!(check_slashing_db("postgres://u:p@h/db?sslmode=verify-ca&sslrootcert=/c").is_ok());
        let err = check_slashing_db("postgres://u:secret@h/db?sslmode=verify").expect_err("mode");
        assert!(
            err.to_string().contains("sslmode \"verify\" is not one of"),
            "{err}"
        );
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(check_slashing_db("postgres://h/db?sslcert=/c.pem").is_err());
        assert!(check_slashing_db("sqlite:/data/x.sqlite").is_ok());
        assert!(check_slashing_db("postgres://u:p@h/db").is_ok());
        let err = check_slashing_db("mysql://u:secret@h/db").expect_err("mysql");
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(check_slashing_db("sqlite:").is_err());
        assert!(check_network("hoodi").is_ok());
        assert!(check_network("/no/such/network.yaml").is_err());
    }

    #[test]
    fn scalars_that_yaml_would_misread_are_quoted() {
        assert_eq!(yaml_scalar("127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(yaml_scalar("true"), "\"true\"");
        assert_eq!(yaml_scalar("a b"), "\"a b\"");
        assert_eq!(yaml_scalar(""), "\"\"");
    }

    #[test]
    fn errors_are_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}

//! A small command-line parser: `--flag value`, `-f value` and bare switches.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

/// Parsed options of one subcommand.
pub struct Args {
    values: BTreeMap<&'static str, String>,
    switches: Vec<&'static str>,
}

/// One option a subcommand accepts: long name, optional short name, takes a value or not.
pub struct Spec {
    pub long: &'static str,
    pub short: Option<&'static str>,
    pub takes_value: bool,
}

pub const fn opt(long: &'static str, short: Option<&'static str>) -> Spec {
    Spec {
        long,
        short,
        takes_value: true,
    }
}

pub const fn switch(long: &'static str) -> Spec {
    Spec {
        long,
        short: None,
        takes_value: false,
    }
}

impl Args {
    /// Parses `argv` against `specs`; unknown options and missing values are errors.
    pub fn parse(argv: &[String], specs: &[Spec]) -> Result<Args, String> {
        let mut values = BTreeMap::new();
        let mut switches = Vec::new();
        let mut it = argv.iter();
        while let Some(a) = it.next() {
            let spec = specs
                .iter()
                .find(|s| {
                    a.strip_prefix("--") == Some(s.long)
                        || s.short.is_some_and(|sh| a.strip_prefix('-') == Some(sh))
                })
                .ok_or_else(|| format!("unknown option '{a}'"))?;
            if spec.takes_value {
                let v = it
                    .next()
                    .ok_or_else(|| format!("option --{} needs a value", spec.long))?;
                values.insert(spec.long, v.clone());
            } else {
                switches.push(spec.long);
            }
        }
        Ok(Args { values, switches })
    }

    /// The raw value of `--name`, if given.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of `--name`, which must be given.
    pub fn required(&self, name: &str) -> Result<&str, String> {
        self.str(name).ok_or_else(|| format!("missing --{name}"))
    }

    /// The value of `--name` parsed as `T`, or `default`.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: Display,
    {
        match self.str(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| format!("invalid value '{v}' for --{name}: {e}")),
        }
    }

    /// Whether the switch `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.switches.contains(&name)
    }
}

//! The error every subcommand returns: what went wrong, the error it came from, and whether
//! the command line was at fault (exit status 2, as clap's own usage errors) or the work
//! (exit status 1).
//!
//! [`Error::report`] prints the chain once: the context, then each `source()` in turn, leaving
//! out a link whose text another link already says (a context naming the file, when the
//! runtime's error names it too: `cannot read 'm.gguf': No such file`, not
//! `m.gguf: cannot read 'm.gguf': …`).

use std::fmt;

/// A subcommand's failure.
#[derive(Debug)]
pub struct Error {
    usage: bool,
    context: Option<String>,
    source: Option<Box<dyn std::error::Error + 'static>>,
}

/// A subcommand's result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A bad command line (an option's value, a missing option clap cannot require): exit
    /// status 2.
    pub fn usage(message: impl Into<String>) -> Error {
        Error {
            usage: true,
            context: Some(message.into()),
            source: None,
        }
    }

    /// Failure because of `source`, whose chain is printed.
    pub fn from_err(source: impl std::error::Error + 'static) -> Error {
        Error {
            usage: false,
            context: None,
            source: Some(Box::new(source)),
        }
    }

    /// The exit status this error ends `tern` with.
    pub fn exit_code(&self) -> u8 {
        if self.usage {
            2
        } else {
            1
        }
    }

    /// The chain in one line: each link once, joined by `: `.
    pub fn report(&self) -> String {
        let mut links: Vec<String> = self.context.iter().cloned().collect();
        let mut next: Option<&(dyn std::error::Error + 'static)> = self.source.as_deref();
        while let Some(e) = next {
            links.push(e.to_string());
            next = e.source();
        }
        let mut kept: Vec<&str> = Vec::new();
        for (i, link) in links.iter().enumerate() {
            let said_later = links[i + 1..].iter().any(|l| l.contains(link.as_str()));
            let said_before = kept.iter().any(|k| k.contains(link.as_str()));
            if !link.is_empty() && !said_later && !said_before {
                kept.push(link);
            }
        }
        kept.join(": ")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report())
    }
}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error {
            usage: false,
            context: Some(message),
            source: None,
        }
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::from(message.to_string())
    }
}

/// Adding what was being done to an error.
pub trait Context<T> {
    /// On error, `context` followed by the error's chain.
    fn context(self, context: impl fmt::Display) -> Result<T>;
}

impl<T, E: std::error::Error + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error {
            usage: false,
            context: Some(context.to_string()),
            source: Some(Box::new(e)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("loading failed")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_chain_is_printed_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e: Result<()> = Err(Outer(io())).context("m.gguf");
        assert_eq!(
            e.unwrap_err().report(),
            "m.gguf: loading failed: no such file"
        );
        // A context the error already states is not repeated.
        let e: Result<()> =
            Err(std::io::Error::other("cannot read 'm.gguf': gone")).context("m.gguf");
        assert_eq!(e.unwrap_err().report(), "cannot read 'm.gguf': gone");
        assert_eq!(Error::usage("bad").exit_code(), 2);
        assert_eq!(Error::from("worse").exit_code(), 1);
    }
}

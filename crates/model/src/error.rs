//! Errors of the decode -> normalize -> validate pipeline, with Consul's texts.

use std::fmt;

/// Formats messages like Go's `multierror` (what Consul prints for several errors).
pub fn multierror(messages: &[String]) -> String {
    let mut out = if messages.len() == 1 {
        "1 error occurred:\n".to_string()
    } else {
        format!("{} errors occurred:\n", messages.len())
    };
    for m in messages {
        out.push_str("\t* ");
        out.push_str(m);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// The input could not be turned into an entry of a known kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// HCL or JSON syntax error (with position).
    Syntax(String),
    /// No `Kind`/`kind` key at the top level.
    MissingKind,
    /// `Kind` is not a string.
    KindNotString,
    /// `Kind` names no kind Tribune knows.
    InvalidKind(String),
    /// Unknown keys and type errors, all of them, each naming its dotted path.
    Fields(Vec<String>),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Syntax(s) => f.write_str(s),
            DecodeError::MissingKind => {
                f.write_str("Payload does not contain a kind/Kind key at the top level")
            }
            DecodeError::KindNotString => f.write_str("Kind value in payload is not a string"),
            DecodeError::InvalidKind(k) => {
                write!(f, "invalid config entry kind: {k}")?;
                // `jwt_provider`, `JWT-Provider`: the kind meant, named.
                let spelled = k.replace('_', "-").to_ascii_lowercase();
                let kinds = crate::entry::Kind::ALL.map(|k| k.as_str());
                if let Some(near) = crate::decode::suggestion(&spelled, kinds) {
                    write!(f, " (did you mean {near:?}?)")?;
                }
                Ok(())
            }
            DecodeError::Fields(list) => f.write_str(&multierror(list)),
        }
    }
}

impl std::error::Error for DecodeError {}

/// One broken rule: the field it concerns and Consul's exact message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Dotted field path, e.g. `Sources[0].Permissions[1].HTTP.PathExact`.
    pub path: String,
    /// The message, with Consul's exact text.
    pub message: String,
}

impl ValidationError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// `path: message`, or just the message when it already starts with its path.
    pub fn with_path(&self) -> String {
        if self.path.is_empty() || self.message.starts_with(&self.path) {
            self.message.clone()
        } else {
            format!("{}: {}", self.path, self.message)
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Every rule an entry breaks, in Consul's evaluation order: the first one is the
/// error Consul itself would report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError::new(path, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn first(&self) -> Option<&ValidationError> {
        self.0.first()
    }

    pub fn messages(&self) -> Vec<String> {
        self.0.iter().map(|e| e.message.clone()).collect()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => f.write_str(&one.message),
            _ => f.write_str(&multierror(&self.messages())),
        }
    }
}

impl std::error::Error for ValidationErrors {}

/// Any failure between input text and a validated entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryError {
    Decode(DecodeError),
    Invalid(ValidationErrors),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Decode(e) => e.fmt(f),
            EntryError::Invalid(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for EntryError {}

impl From<DecodeError> for EntryError {
    fn from(e: DecodeError) -> Self {
        EntryError::Decode(e)
    }
}

impl From<ValidationErrors> for EntryError {
    fn from(e: ValidationErrors) -> Self {
        EntryError::Invalid(e)
    }
}

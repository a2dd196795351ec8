//! The one rule for service names, wherever a name enters: registrations, leaf
//! certificates, config entries and intentions (decisions.md #19's "one validation").
//!
//! A service name becomes a path segment of a SPIFFE ID
//! (`spiffe://<td>/ns/default/dc/<dc>/svc/<name>`), so it may contain only what the
//! SPIFFE spec allows there: ASCII letters, digits, `-`, `_` and `.`, and it is not
//! `.` or `..`. Consul itself only warns about such names (DNS discoverability);
//! Tribune refuses them, because a name like `api?x=1`, `api#x`, `api\n` or one with a
//! NUL byte is parsed differently by different verifiers. `*` (the wildcard) is
//! allowed only where the caller says so (intentions).

/// The longest service name (Consul's ACL service identity limit).
pub const MAX_SERVICE_NAME: usize = 256;

/// Checks a service name; the error says what is wrong, for the caller to prefix
/// with the field it came from.
pub fn check_service_name(name: &str) -> Result<(), String> {
    check_name("service name", name)
}

/// The same rule for other names that end up in paths and identities (service
/// instance IDs); `what` names the thing in the message.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if name.len() > MAX_SERVICE_NAME {
        return Err(format!("{what} is longer than {MAX_SERVICE_NAME} bytes"));
    }
    if name == "." || name == ".." {
        return Err(format!("{what} {name:?} is not a valid name"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{what} {name:?} contains {bad:?}: only letters, digits, '-', '_' and '.' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_other_verifiers_parse_differently_are_refused() {
        for ok in ["api", "web-1", "billing_v2", "a.b", "A9"] {
            assert_eq!(check_service_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "api?x=1",
            "api#x",
            "a b",
            "api\n",
            "a\0b",
            "a/b",
            "a\\b",
            "caf\u{e9}",
            "*",
            "a%2f",
        ] {
            assert!(check_service_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_service_name(&"a".repeat(257)).is_err());
        assert_eq!(
            check_service_name("api?x=1").unwrap_err(),
            "service name \"api?x=1\" contains '?': only letters, digits, '-', '_' and '.' are allowed"
        );
    }
}

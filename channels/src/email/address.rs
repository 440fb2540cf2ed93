//! Addresses as they go on the wire.
//!
//! Tayori does not negotiate SMTPUTF8 (RFC 6531), so every address it writes, in
//! a header or in the SMTP envelope, must be ASCII: a relay without SMTPUTF8
//! refuses or mangles 8-bit `To:` lines and `RCPT TO` commands. An
//! internationalized domain has an ASCII form (IDNA, RFC 5891: `例え.jp` is
//! `xn--r8jz45g.jp`) that every relay carries; a non-ASCII local part has none,
//! so such an address is refused.
//!
//! Suppression lists and VERP tags compare addresses in the same ASCII form
//! ([`with_ascii_domain`]), because a bounce report names the address as it was
//! sent (`taro@xn--r8jz45g.jp`) while the job, an unsubscribe token or an operator
//! may name it in Unicode (`taro@例え.jp`).
//!
//! Japanese mobile carriers issued addresses RFC 5322 does not allow unquoted
//! (`taro..yamada@docomo.ne.jp`, `hanako.@ezweb.ne.jp`) before they enforced it,
//! and long-lived customer lists still hold them. For the domains an operator
//! lists ([`recipient_address`]) such a local part is sent quoted
//! (`"taro..yamada"@docomo.ne.jp`), as Japanese delivery services do; the
//! comparison form drops the quotes again, so a bounce naming the quoted form
//! and a job naming the bare one are the same address.

use std::borrow::Cow;

use lettre::Address;

/// Why an address cannot be sent to without SMTPUTF8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not an address at all (lettre's reason).
    #[error(transparent)]
    Syntax(#[from] lettre::address::AddressError),
    /// A local part with non-ASCII characters needs SMTPUTF8, which Tayori does not use.
    #[error(
        "the local part (before the @) is not ASCII: it needs SMTPUTF8, which Tayori does not use"
    )]
    NonAsciiLocalPart,
    /// The domain is not ASCII and has no IDNA form (a forbidden character, an empty label).
    #[error("the domain is not a valid internationalized domain name")]
    Domain,
}

/// The address in the ASCII form it is sent in: the domain in IDNA form if it is an
/// internationalized one, the rest as given.
pub fn ascii_address(address: &str) -> Result<Address, AddressError> {
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or(lettre::address::AddressError::MissingParts)?;
    if !local.is_ascii() {
        return Err(AddressError::NonAsciiLocalPart);
    }
    Ok(Address::new(local, ascii_domain(domain)?)?)
}

/// The recipient's address as it goes on the wire: [`ascii_address`], except
/// that for a domain of `legacy_domains` (lowercase ASCII, e.g. `docomo.ne.jp`)
/// a local part that is only invalid for its dots (consecutive, leading or
/// trailing) is accepted and quoted: `taro..yamada@docomo.ne.jp` goes out as
/// `"taro..yamada"@docomo.ne.jp` in `RCPT TO` and `To:`. Other domains stay strict.
pub fn recipient_address(
    address: &str,
    legacy_domains: &[String],
) -> Result<Address, AddressError> {
    let strict = ascii_address(address);
    let Err(AddressError::Syntax(lettre::address::AddressError::InvalidUser)) = strict else {
        return strict;
    };
    let Some((local, domain)) = address.rsplit_once('@') else {
        return strict;
    };
    let domain = ascii_domain(domain)?;
    let listed = legacy_domains
        .iter()
        .any(|d| d.eq_ignore_ascii_case(&domain));
    if !listed || !is_legacy_local_part(local) {
        return strict;
    }
    Ok(Address::new(format!("\"{local}\""), domain)?)
}

/// A local part made of RFC 5322 `atext` and dots, dots anywhere: what the
/// carriers issued. Nothing that would need escaping inside quotes (`"`, `\`),
/// no blanks, at most 64 characters (RFC 5321's limit).
fn is_legacy_local_part(local: &str) -> bool {
    const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";
    !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || ATEXT_SPECIALS.contains(c))
}

/// The address with its domain in IDNA form when that domain is non-ASCII and has
/// one, and a quoted local part without its quotes (`"taro..yamada"@docomo.ne.jp`
/// → `taro..yamada@docomo.ne.jp`); otherwise the address as given. For comparing
/// addresses (suppression keys, VERP tags): it never fails, and an ASCII address
/// comes back borrowed, unchanged.
pub fn with_ascii_domain(address: &str) -> Cow<'_, str> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Cow::Borrowed(address);
    };
    let unquoted = local
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .filter(|l| is_legacy_local_part(l));
    let local = unquoted.unwrap_or(local);
    match ascii_domain(domain) {
        Ok(Cow::Owned(domain)) => Cow::Owned(format!("{local}@{domain}")),
        _ if unquoted.is_some() => Cow::Owned(format!("{local}@{domain}")),
        _ => Cow::Borrowed(address),
    }
}

/// `例え.jp` → `xn--r8jz45g.jp` (UTS #46 processing, which also lowercases and maps
/// full-width forms); an ASCII domain as it is (lettre checks it).
fn ascii_domain(domain: &str) -> Result<Cow<'_, str>, AddressError> {
    if domain.is_ascii() {
        return Ok(Cow::Borrowed(domain));
    }
    use idna::uts46::{DnsLength, Hyphens, Uts46};
    // STD3 rules: only letters, digits and hyphens come out (no `<`, `/`, blanks);
    // DNS lengths: no empty label, none over 63 bytes, at most 253 in all.
    Uts46::new()
        .to_ascii(
            domain.as_bytes(),
            idna::AsciiDenyList::STD3,
            Hyphens::Allow,
            DnsLength::Verify,
        )
        .map(|d| Cow::Owned(d.into_owned()))
        .map_err(|_| AddressError::Domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internationalized_domain_goes_out_in_punycode() {
        let a = ascii_address("taro@例え.jp").unwrap();
        assert_eq!(a.to_string(), "taro@xn--r8jz45g.jp");
        // UTS #46 maps full-width letters and dots, and lowercases.
        let a = ascii_address("taro@ＥＸＡＭＰＬＥ．例え.jp").unwrap();
        assert_eq!(a.to_string(), "taro@example.xn--r8jz45g.jp");
        // ASCII addresses are left exactly as they are.
        let a = ascii_address("Taro.Yamada+news@Example.COM").unwrap();
        assert_eq!(a.to_string(), "Taro.Yamada+news@Example.COM");
    }

    #[test]
    fn a_non_ascii_local_part_is_refused() {
        for a in ["太郎@example.jp", "tarō@例え.jp", "\"山田\"@example.com"] {
            assert_eq!(
                ascii_address(a),
                Err(AddressError::NonAsciiLocalPart),
                "{a}"
            );
        }
    }

    #[test]
    fn bad_domains_and_non_addresses_are_refused() {
        assert_eq!(ascii_address("taro@例え..jp"), Err(AddressError::Domain));
        assert_eq!(ascii_address("taro@例え<x>.jp"), Err(AddressError::Domain));
        assert!(matches!(
            ascii_address("no at sign"),
            Err(AddressError::Syntax(_))
        ));
        assert!(matches!(
            ascii_address("a b@example.com"),
            Err(AddressError::Syntax(_))
        ));
    }

    #[test]
    fn comparison_forms_agree_with_what_is_sent() {
        assert_eq!(with_ascii_domain("taro@例え.jp"), "taro@xn--r8jz45g.jp");
        assert_eq!(
            with_ascii_domain("taro@xn--r8jz45g.jp"),
            "taro@xn--r8jz45g.jp"
        );
        assert!(matches!(
            with_ascii_domain("Taro@Example.com"),
            Cow::Borrowed("Taro@Example.com")
        ));
        // No ASCII form: compared as given.
        assert_eq!(with_ascii_domain("taro@例え..jp"), "taro@例え..jp");
        assert_eq!(with_ascii_domain("太郎"), "太郎");
    }

    fn legacy() -> Vec<String> {
        vec!["docomo.ne.jp".into(), "ezweb.ne.jp".into()]
    }

    #[test]
    fn a_carriers_legacy_local_part_goes_out_quoted_on_its_domains_only() {
        for (given, sent) in [
            ("taro..yamada@docomo.ne.jp", "\"taro..yamada\"@docomo.ne.jp"),
            ("hanako.@ezweb.ne.jp", "\"hanako.\"@ezweb.ne.jp"),
            (".taro@EZweb.ne.jp", "\".taro\"@EZweb.ne.jp"),
            ("a.-_b..c@docomo.ne.jp", "\"a.-_b..c\"@docomo.ne.jp"),
            // Valid addresses are sent as they are, on those domains too.
            ("taro.yamada@docomo.ne.jp", "taro.yamada@docomo.ne.jp"),
        ] {
            let a = recipient_address(given, &legacy()).unwrap();
            assert_eq!(a.to_string(), sent, "{given}");
            // The comparison form is the bare one, whichever form is given.
            assert_eq!(with_ascii_domain(sent), with_ascii_domain(given), "{given}");
        }
        // Other domains stay strict.
        for a in ["taro..yamada@example.com", "hanako.@softbank.ne.jp"] {
            assert_eq!(
                recipient_address(a, &legacy()),
                Err(AddressError::Syntax(
                    lettre::address::AddressError::InvalidUser
                )),
                "{a}"
            );
        }
        // Only dots are forgiven: blanks, quotes, backslashes, non-ASCII are not.
        for a in [
            "taro yamada@docomo.ne.jp",
            "taro\"x@docomo.ne.jp",
            "taro\\x@docomo.ne.jp",
            "..@docomo.ne.jp..",
        ] {
            assert!(recipient_address(a, &legacy()).is_err(), "{a}");
        }
        assert_eq!(
            recipient_address("たろう..@docomo.ne.jp", &legacy()),
            Err(AddressError::NonAsciiLocalPart)
        );
        // An empty list (the operator turned it off) is strict everywhere.
        assert!(recipient_address("taro..yamada@docomo.ne.jp", &[]).is_err());
    }

    #[test]
    fn the_comparison_form_unquotes_only_what_was_quoted_for_dots() {
        assert_eq!(
            with_ascii_domain("\"taro..yamada\"@docomo.ne.jp"),
            "taro..yamada@docomo.ne.jp"
        );
        assert_eq!(with_ascii_domain("\"t..y\"@例え.jp"), "t..y@xn--r8jz45g.jp");
        // A quoted part with a blank is another mailbox: left as it is.
        assert_eq!(
            with_ascii_domain("\"taro yamada\"@example.com"),
            "\"taro yamada\"@example.com"
        );
    }
}

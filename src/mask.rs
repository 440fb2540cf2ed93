//! Addresses as logs may show them: enough to tell two apart while debugging,
//! not enough to identify the person (`t***@example.com`, `+8190****5678`).

use tayori_channels::ChannelKind;

pub fn address(kind: ChannelKind, address: &str) -> String {
    match kind {
        ChannelKind::Email => email(address),
        ChannelKind::Sms => phone(address),
        ChannelKind::Line | ChannelKind::Dm => keep_start(address, 5),
    }
}

/// The first character of the local part, then `***@domain`.
fn email(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => keep_start(address, 1),
    }
}

/// The country and carrier prefix and the last four digits: `+8190****5678`.
fn phone(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() < 10 {
        return keep_start(number, 2);
    }
    let head: String = chars[..5].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

fn keep_start(s: &str, n: usize) -> String {
    let head: String = s.chars().take(n).collect();
    if head.len() == s.len() {
        "***".to_owned()
    } else {
        format!("{head}***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_per_channel() {
        assert_eq!(
            address(ChannelKind::Email, "taro@example.com"),
            "t***@example.com"
        );
        assert_eq!(address(ChannelKind::Sms, "+819012345678"), "+8190****5678");
        assert_eq!(
            address(ChannelKind::Line, "U4af4980629a0b2c3d4e5f60718293a4b"),
            "U4af4***"
        );
        assert_eq!(address(ChannelKind::Sms, "12345"), "12***");
        assert_eq!(address(ChannelKind::Email, "x"), "***");
    }
}

//! Typed epoll tokens: which source an event is for.

/// Typed epoll tokens: kind in the high 32 bits, an fd/endpoint number low.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token {
    Signal,
    VdeListener,
    UmlListener,
    MgmtListener,
    /// A control connection (fd = endpoint id).
    Ctl(u32),
    /// A VDE per-port data socket of endpoint N.
    Data(u32),
    /// The shared uml_switch data socket (0) or the v0 named one (1).
    Shared(u32),
    Mgmt(u32),
    /// The link emulation timer.
    Timer,
    /// The vector (bess) listening socket.
    VecListener,
}

impl Token {
    pub fn encode(self) -> u64 {
        let (k, v) = match self {
            Token::Signal => (1u64, 0u32),
            Token::VdeListener => (2, 0),
            Token::UmlListener => (3, 0),
            Token::MgmtListener => (4, 0),
            Token::Ctl(n) => (5, n),
            Token::Data(n) => (6, n),
            Token::Shared(n) => (7, n),
            Token::Mgmt(n) => (8, n),
            Token::Timer => (9, 0),
            Token::VecListener => (10, 0),
        };
        (k << 32) | v as u64
    }

    pub fn decode(t: u64) -> Option<Token> {
        let v = t as u32;
        Some(match t >> 32 {
            1 => Token::Signal,
            2 => Token::VdeListener,
            3 => Token::UmlListener,
            4 => Token::MgmtListener,
            5 => Token::Ctl(v),
            6 => Token::Data(v),
            7 => Token::Shared(v),
            8 => Token::Mgmt(v),
            9 => Token::Timer,
            10 => Token::VecListener,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_roundtrip() {
        for t in [
            Token::Signal,
            Token::VdeListener,
            Token::UmlListener,
            Token::MgmtListener,
            Token::Ctl(7),
            Token::Data(u32::MAX - 1),
            Token::Shared(1),
            Token::Mgmt(3),
            Token::Timer,
            Token::VecListener,
        ] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
        assert_eq!(Token::decode(99 << 32), None);
    }
}

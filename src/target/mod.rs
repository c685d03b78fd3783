//! Platform targets. Each platform's facts (auth, limits, codes) live in one place here and
//! are shared by the clients and the sandbox that emulates them.

pub mod udesk_auth;

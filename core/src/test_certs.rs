//! Certificates for tests, made with rcgen: this crate's unit tests use them, and other crates'
//! tests through the feature `test-util` (enabled by their dev-dependencies, never by a
//! binary's build).

/// A date: year, month, day.
pub type Ymd = (i32, u8, u8);

/// A validity period that contains [`NOW`]: 2026-10-31 to 2026-12-01.
pub const VALID: (Ymd, Ymd) = ((2026, 10, 31), (2026, 12, 1));

/// 2026-11-15T00:00:00Z in Unix seconds: inside [`VALID`].
pub const NOW: i64 = 1_794_700_800;

/// A self-signed certificate for the DNS names `names`, valid from the first date to the
/// second, and its private key: `(certificate PEM, key PEM)`.
pub fn mk_cert(names: &[&str], (from, to): (Ymd, Ymd)) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

//! Signs the JWTs of the test token service in the form distribution 2.8 verifies: ES256,
//! with the signing certificate in the `x5c` header, chaining to the registry's
//! `rootcertbundle` (here the certificate is its own root).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

use crate::{HarnessError, Result};

/// A P-256 key and its self-signed certificate.
pub(crate) struct TokenSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    certificate_der: Vec<u8>,
    certificate_pem: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").finish_non_exhaustive()
    }
}

impl TokenSigner {
    pub(crate) fn generate(common_name: &str) -> Result<Self> {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(vec![common_name.to_owned()])?;
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        let certificate = params.self_signed(&key_pair)?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_pair.serialize_der(),
            &rng,
        )
        .map_err(|_| HarnessError::SigningKey)?;
        Ok(Self {
            key,
            rng,
            certificate_der: certificate.der().to_vec(),
            certificate_pem: certificate.pem(),
        })
    }

    /// The certificate in PEM, for the registry's `rootcertbundle`.
    pub(crate) fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// A compact JWS of `claims`. The signature is the fixed-width `r || s` that JWS ES256
    /// (and libtrust, which distribution uses to verify) expects, not ASN.1.
    pub(crate) fn sign(&self, claims: &serde_json::Value) -> Result<String> {
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [STANDARD.encode(&self.certificate_der)],
        });
        let encode = |value: &serde_json::Value| -> Result<String> {
            let json =
                serde_json::to_vec(value).map_err(|e| HarnessError::json("a JWT part", e))?;
            Ok(URL_SAFE_NO_PAD.encode(json))
        };
        let signing_input = format!("{}.{}", encode(&header)?, encode(claims)?);
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| HarnessError::Signing)?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, KeyPair, UnparsedPublicKey};

    #[test]
    fn signature_verifies_with_the_public_key_and_header_carries_the_certificate() {
        let signer = TokenSigner::generate("test-signer").expect("signer");
        let token = signer.sign(&serde_json::json!({"iss": "x"})).expect("token");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("base64");
        assert_eq!(signature.len(), 64);
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, signer.key.public_key());
        let input = format!("{}.{}", parts[0], parts[1]);
        public.verify(input.as_bytes(), &signature).expect("valid signature");
        assert!(public.verify(b"other input", &signature).is_err());
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        let x5c = header["x5c"][0].as_str().expect("x5c");
        assert_eq!(STANDARD.decode(x5c).expect("der"), signer.certificate_der);
        assert!(signer.certificate_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}

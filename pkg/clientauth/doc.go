// Package clientauth lets only the API server call pullgate: it verifies the client
// certificate of every TLS connection to the webhook server against a CA bundle read from a
// file (re-read when the file changes) and, optionally, against a list of allowed names.
//
// It plugs into controller-runtime's webhook server through webhook.Options.TLSOpts, so the
// server, its listener and its serving-certificate reload stay controller-runtime's. The
// check is done in tls.Config.VerifyConnection, with ClientAuth set to RequestClientCert,
// rather than by crypto/tls itself (RequireAndVerifyClientCert): crypto/tls refuses a caller
// without a certificate or with one from another CA before any callback runs, so such a
// refusal could only be seen in the http.Server's ErrorLog, which controller-runtime does not
// let us set; and its ClientCAs pool is fixed when the listener starts. Here the chain is
// verified with crypto/x509's own Certificate.Verify (client-auth key usage, validity) against
// the CA pool in force at that moment, every refusal happens during the handshake (the caller
// gets a TLS alert and no HTTP answer), and each is counted by reason in
// pullgate_webhook_refused_callers_total:
//
//   - no_certificate: the caller presented none;
//   - unknown_ca: its certificate chains to no CA of the bundle;
//   - invalid_certificate: it chains to the CA but is expired, not yet valid, or not for
//     client authentication;
//   - name_not_allowed: valid, but neither its common name nor a DNS or URI subject
//     alternative name is among the allowed names.
//
// crypto/tls proves that the caller holds the certificate's private key (its
// CertificateVerify message) after VerifyConnection has run (handshake_server_tls13.go
// readClientCertificate): a caller replaying someone else's certificate is refused by
// crypto/tls, but is not counted.
//
// The process's own readiness check must complete a handshake too: the Authenticator holds a
// probe certificate made at start, whose key never leaves memory, accepted and not counted.
package clientauth

// Package secrets keeps a cluster's Talos secrets bundle (CAs, tokens, encryption keys) in
// clusters/<name>/secrets.sops.yaml, SOPS-encrypted.
//
// The bundle is created once, with machinery, the first time a cluster is generated. After
// that its content is only ever read: losing or replacing it would orphan every running node,
// so an existing bundle is never regenerated, and never touched when it cannot be decrypted.
// When the project's recipients change, generate re-encrypts it for them without changing a
// byte of its content (sopsfile.Rule.Rekey).
//
// The package also knows the secret input files a profile names (S3 keys, the PVE token):
// they must be SOPS-encrypted on disk, which CheckInputs verifies without any key.
package secrets

// Package secrets keeps a cluster's Talos secrets bundle (CAs, tokens, encryption keys) in
// clusters/<name>/secrets.sops.yaml, SOPS-encrypted.
//
// The bundle is created once, with machinery, the first time a cluster is generated. After
// that it is only ever read: losing or replacing it would orphan every running node, so an
// existing file is never overwritten or regenerated, even when it cannot be decrypted.
package secrets

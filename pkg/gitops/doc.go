// Package gitops writes a cluster's generated output (clusters/<name>/) so that it is safe and
// pleasant to keep in Git: atomic writes, no rewrite of unchanged files (mtimes and Git stay
// quiet), secrets SOPS-encrypted, a leak check that refuses to write any plaintext private
// key, token or age identity, a .gitignore for decrypted material, and an optional commit.
package gitops

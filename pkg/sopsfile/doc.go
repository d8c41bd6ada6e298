// Package sopsfile reads and writes SOPS-encrypted YAML with the sops library, so that every
// file talforge encrypts opens with the standard `sops` CLI and the reverse.
//
// Recipients and what to encrypt come from the project's .sops.yaml creation rules (any key
// type SOPS supports); decryption keys come from the environment exactly as the sops CLI reads
// them (SOPS_AGE_KEY, SOPS_AGE_KEY_FILE, SOPS_AGE_KEY_CMD, ~/.config/sops/age/keys.txt).
//
// SOPS output is randomised (fresh data key, IVs and MAC timestamp), so re-encrypting unchanged
// data would churn Git on every run. WriteFile therefore leaves a file alone when its
// decrypted content, recipients and encryption rule are unchanged.
//
// A Config is one run's view of the creation rules: it reads each rule once, and the files it
// encrypts for the same recipients share one data key, new in every run.
package sopsfile

package sopsfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"

	"github.com/talforge/talforge/pkg/atomicfile"
)

// Recipients lists the master keys the rule encrypts for (age recipients, PGP fingerprints,
// KMS ARNs...), sorted.
func (r *Rule) Recipients() []string { return recipients(r.metadata()) }

// Rekey makes the SOPS file at path decryptable by exactly the rule's recipients without
// changing what it holds, and reports whether it rewrote the file. It is what `sops updatekeys`
// does (sops cmd/sops/subcommand/updatekeys/updatekeys.go): the file's data key is re-wrapped
// for the new key groups, and every encrypted value, the MAC and its timestamp stay byte for
// byte. Only when the file was encrypted differently (values left in clear by an
// encrypted_regex, a suffix...) are the decrypted bytes encrypted again under the rule, which
// Encrypt refuses if it would leave values in clear itself.
//
// Rekey never loses data: a file this machine cannot decrypt, or whose MAC does not verify, is
// an error and stays as it is; the new file is decrypted and compared with the old plaintext
// before it replaces the old one atomically; and it is not written if the file changed
// meanwhile.
func (r *Rule) Rekey(path string) (bool, error) {
	old, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}

	store := storeFor(path)

	tree, err := store.LoadEncryptedFile(old)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, notEncrypted(err))
	}

	want := r.metadata()
	sameKeys := slices.Equal(recipients(tree.Metadata), recipients(want)) && tree.Metadata.ShamirThreshold == want.ShamirThreshold
	sameCrypt := sameEncryption(tree.Metadata, want)
	// Values in clear are re-encrypted (or refused by Encrypt, if the rule keeps them so).
	whole := r.checkEncrypted(path, tree.Branches) == nil

	if sameKeys && sameCrypt && whole {
		return false, nil
	}

	// Decrypting proves that this machine holds a key and that the content is intact.
	plain, err := Decrypt(path, old)
	if err != nil {
		return false, fmt.Errorf("re-encrypting %s for the recipients in .sops.yaml: %w", path, err)
	}

	var enc []byte

	// Re-wrapping the data key keeps what is encrypted as it is, so only when every value is.
	if sameCrypt && whole {
		key, err := tree.Metadata.GetDataKey()
		if err != nil {
			return false, fmt.Errorf("re-encrypting %s: %w", path, err)
		}

		abs, err := filepath.Abs(path)
		if err != nil {
			return false, err
		}

		groups, err := r.ownKeyGroups(abs, path)
		if err != nil {
			return false, fmt.Errorf("re-encrypting %s: %w", path, err)
		}

		tree.Metadata.KeyGroups = groups
		tree.Metadata.ShamirThreshold = want.ShamirThreshold

		if errs := tree.Metadata.UpdateMasterKeys(key); len(errs) > 0 {
			return false, fmt.Errorf("re-encrypting %s for %s: %w", path, strings.Join(recipients(want), ", "), errors.Join(errs...))
		}

		if enc, err = store.EmitEncryptedFile(tree); err != nil {
			return false, fmt.Errorf("re-encrypting %s: %w", path, err)
		}
	} else if enc, err = r.Encrypt(path, plain); err != nil {
		return false, err
	}

	again, err := Decrypt(path, enc)
	if err != nil {
		return false, fmt.Errorf("re-encrypting %s: the re-encrypted file does not open with this machine's keys, so it is left as it is "+
			"(keep one of your own keys among the recipients, or run `sops updatekeys %s`): %w", path, path, err)
	}

	if !bytes.Equal(again, plain) {
		return false, fmt.Errorf("re-encrypting %s: the re-encrypted content differs from the original, so it is left as it is", path)
	}

	if now, err := os.ReadFile(path); err != nil || !bytes.Equal(now, old) {
		return false, fmt.Errorf("re-encrypting %s: the file changed while it was being re-encrypted; run again", path)
	}

	return true, atomicfile.Write(path, enc, 0o644)
}

// sameEncryption reports whether two SOPS metadata select the same values to encrypt.
func sameEncryption(got, want sops.Metadata) bool {
	return got.EncryptedRegex == want.EncryptedRegex && got.UnencryptedRegex == want.UnencryptedRegex &&
		got.EncryptedSuffix == want.EncryptedSuffix && got.UnencryptedSuffix == want.UnencryptedSuffix &&
		got.EncryptedCommentRegex == want.EncryptedCommentRegex && got.UnencryptedCommentRegex == want.UnencryptedCommentRegex &&
		got.MACOnlyEncrypted == want.MACOnlyEncrypted
}

// ErrNotEncrypted means a file that must be SOPS-encrypted holds no SOPS metadata: it is on
// disk in clear.
var ErrNotEncrypted = errors.New("not SOPS-encrypted: the file is on disk in clear")

// notEncrypted turns a store's load error into ErrNotEncrypted, or a message that quotes none
// of the content: YAML and JSON parse errors can quote the offending text, which may be a
// secret.
func notEncrypted(err error) error {
	if errors.Is(err, sops.MetadataNotFound) {
		return ErrNotEncrypted
	}

	return errors.New("not a readable SOPS file (its YAML or its sops metadata is damaged)")
}

// ClearValues returns the keys of the values that the SOPS file data stores in clear, as
// dotted paths; name selects the format by its extension, as for Decrypt. A file without SOPS
// metadata (plaintext) is ErrNotEncrypted. It needs no key, and it never returns a value.
//
// Every value counts, including those a creation rule leaves in clear on purpose
// (unencrypted_suffix, encrypted_regex); empty values and comments do not.
func ClearValues(name string, data []byte) ([]string, error) {
	tree, err := storeFor(name).LoadEncryptedFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, notEncrypted(err))
	}

	var inClear []string

	for _, b := range tree.Branches {
		plaintextLeaves(b, nil, &inClear)
	}

	return inClear, nil
}

// quietCipher is SOPS' AES cipher, except that a value that does not decrypt is reported by
// its key, never by its content: sops' own error quotes the value ("Input string %s does not
// match sops' data format", aes/cipher.go), and such a value is typically a secret pasted into
// an encrypted file by hand.
type quietCipher struct {
	aes.Cipher

	// failed is the key of the last value that did not decrypt: Tree.Decrypt stops at the first
	// value that fails (a comment that fails is kept as it is, and the walk goes on).
	failed string
}

func (c *quietCipher) Decrypt(ciphertext string, key []byte, additionalData string) (any, error) {
	v, err := c.Cipher.Decrypt(ciphertext, key, additionalData)
	if err != nil {
		// additionalData is the value's path, "a:b:c:" (sops.go, Tree.Decrypt).
		key := strings.ReplaceAll(strings.TrimSuffix(additionalData, ":"), ":", ".")
		c.failed = key

		return nil, fmt.Errorf("the value of %s does not decrypt", key)
	}

	return v, nil
}

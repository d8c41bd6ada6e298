package sopsfile

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/keyservice"
)

// runKeys holds the data keys of one Config's files: one per set of recipients, made and
// wrapped when the first file for those recipients is encrypted.
//
// The sops CLI makes a data key per file because it encrypts one file per process; the format
// only asks that a file's data key be wrapped for that file's recipients. Wrapping costs a key
// agreement per recipient (X25519 for age), which was a fifth of the CPU time of a 1,000-node
// generate (issue 16), so the files one run writes for the same recipients share a key. That
// opens nothing to anyone: whoever can unwrap one file's key is a recipient of every file that
// shares it. Every value is still encrypted with its own random 256-bit IV (sops aes), far
// inside what AES-GCM allows under one key. The next run makes a new key, so a recipient
// removed from .sops.yaml cannot read what later runs write even if it kept an old key; and
// `sops rotate` still gives any one file a key of its own.
type runKeys struct {
	mu   sync.Mutex
	byFP map[string]*wrappedKey // by Rule.Fingerprint
}

// wrappedKey is a data key and the key groups that wrap it for its recipients.
type wrappedKey struct {
	once   sync.Once
	key    []byte
	groups []sops.KeyGroup
	err    error
}

// dataKey returns the data key for the file at abs (path as given) under r, and sets m's key
// groups to the ones that wrap it: the run's key for r's recipients when r came from a Config,
// else a new one.
func (r *Rule) dataKey(abs, path string, m *sops.Metadata) ([]byte, error) {
	if r.keys == nil {
		return newDataKey(m)
	}

	w := r.keys.get(r.Fingerprint())

	w.once.Do(func() {
		// The shared groups get master keys of their own (see ownKeyGroups).
		groups := r.metadata()
		if groups.KeyGroups, w.err = r.ownKeyGroups(abs, path); w.err != nil {
			return
		}

		w.key, w.err = newDataKey(&groups)
		w.groups = groups.KeyGroups
	})

	if w.err != nil {
		return nil, w.err
	}

	// Encrypting and emitting a file only read the groups.
	m.KeyGroups = w.groups

	return slices.Clone(w.key), nil
}

func (k *runKeys) get(fingerprint string) *wrappedKey {
	k.mu.Lock()
	defer k.mu.Unlock()

	if k.byFP == nil {
		k.byFP = map[string]*wrappedKey{}
	}

	w := k.byFP[fingerprint]
	if w == nil {
		w = &wrappedKey{}
		k.byFP[fingerprint] = w
	}

	return w
}

// newDataKey makes a random data key and wraps it with every master key of m's key groups,
// through the local key service as the sops CLI does.
func newDataKey(m *sops.Metadata) ([]byte, error) {
	tree := sops.Tree{Metadata: *m}

	key, errs := tree.GenerateDataKeyWithKeyServices([]keyservice.KeyServiceClient{keyservice.NewLocalClient()})
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	m.KeyGroups = tree.Metadata.KeyGroups

	return key, nil
}

// ownKeyGroups returns the key groups of r with master keys that no Rule holds, read again by
// sops for the file at abs (path as given). Wrapping a data key sets each master key's
// encrypted key, and a Config's rules share theirs (ruleCache), as do the files of a run
// (runKeys).
func (r *Rule) ownKeyGroups(abs, path string) ([]sops.KeyGroup, error) {
	own, err := ruleIn(r.ConfigPath, abs, path)
	if err != nil {
		return nil, err
	}

	if own.Fingerprint() != r.Fingerprint() {
		return nil, fmt.Errorf("%s changed during the run; run again", r.ConfigPath)
	}

	return own.conf.KeyGroups, nil
}

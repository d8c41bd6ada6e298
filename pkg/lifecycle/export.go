package lifecycle

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/atomicfile"
	"github.com/talforge/talforge/pkg/capi"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/gitops"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// Files ExportCAPI writes into its output directory.
const (
	CAPIObjectsFile = "cluster-api.yaml"
	CAPISecretFile  = "talos-secrets.sops.yaml"
)

// ExportOptions say where the Cluster API objects go.
type ExportOptions struct {
	// Out is the output directory (default clusters/<name>/capi).
	Out string
	// Namespace of the objects in the management cluster (default "default").
	Namespace string
	// AllowLossy writes the objects even when they cannot express the whole profile.
	AllowLossy bool
}

// ExportReport is what ExportCAPI found and wrote.
type ExportReport struct {
	Cluster string      `json:"cluster"`
	Lossy   []capi.Loss `json:"lossy"`
	Notes   []string    `json:"notes"`
	Written []string    `json:"written"`
}

// ExportCAPI writes the cluster's Cluster API objects (capi.Build) from what is generated: the
// objects in one file, the secrets bundle's Secret SOPS-encrypted in another. When the objects
// cannot express the whole profile it writes nothing and fails with every loss, unless
// AllowLossy.
func ExportCAPI(ctx context.Context, opts Options, eo ExportOptions) (*ExportReport, error) {
	r, err := loadRun(ctx, opts)
	if err != nil {
		return nil, err
	}

	rendered, err := generate.RenderStored(ctx, r.cluster)
	if err != nil {
		return nil, err
	}

	lh, err := longhornAddon(r.cluster)
	if err != nil {
		return nil, err
	}

	exp, err := capi.Build(ctx, rendered, capi.Options{Namespace: eo.Namespace, Longhorn: lh})
	if err != nil {
		return nil, err
	}

	rep := &ExportReport{Cluster: r.cluster.Metadata.Name, Lossy: exp.Lossy, Notes: exp.Notes}
	if err := exp.Err(); err != nil && !eo.AllowLossy {
		return rep, err
	}

	out := eo.Out
	if out == "" {
		out = filepath.Join(r.out, "capi")
	}

	objects, err := encodeObjects(exp.Objects)
	if err != nil {
		return rep, err
	}

	secret, err := encodeObjects(exp.Secrets)
	if err != nil {
		return rep, err
	}

	// The objects are meant for Git like everything talforge writes: a secret a patch carries
	// (a registry password, say) must not end up there in clear.
	if err := gitops.CheckLeaks([]gitops.File{{Path: CAPIObjectsFile, Data: objects, Redacted: true}}); err != nil {
		return rep, err
	}

	if err := os.MkdirAll(out, 0o755); err != nil {
		return rep, err
	}

	// The Secret first: a directory never holds objects that refer to a Secret it lacks.
	secretPath := filepath.Join(out, CAPISecretFile)
	if _, err := sopsfile.WriteFile(secretPath, secret); err != nil {
		return rep, fmt.Errorf("%s: %w", secretPath, err)
	}

	objectsPath := filepath.Join(out, CAPIObjectsFile)
	if _, err := atomicfile.WriteIfChanged(objectsPath, objects, 0o644); err != nil {
		return rep, err
	}

	rep.Written = []string{r.shown(objectsPath), r.shown(secretPath) + " (encrypted)"}

	return rep, nil
}

// encodeObjects is a multi-document YAML stream of the objects, two-space indented.
func encodeObjects(objs []capi.Object) ([]byte, error) {
	var buf bytes.Buffer

	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)

	for _, o := range objs {
		if err := enc.Encode(o); err != nil {
			return nil, fmt.Errorf("%s %s: %w", o.Kind, o.Metadata.Name, err)
		}
	}

	if err := enc.Close(); err != nil {
		return nil, err
	}

	return buf.Bytes(), nil
}

// longhornAddon renders what the export needs of the cluster's Longhorn, as generate and up
// render it; the S3 credentials are decrypted in memory, for the encrypted Secrets only.
func longhornAddon(c *profile.Cluster) (*capi.Longhorn, error) {
	if c.Longhorn == nil {
		return nil, nil
	}

	values, err := longhorn.RenderValues(c)
	if err != nil {
		return nil, err
	}

	manifests, err := longhorn.RenderManifests(c)
	if err != nil {
		return nil, err
	}

	l := &capi.Longhorn{Version: c.Longhorn.Version, RepoURL: c.Longhorn.RepoURL, Values: values, Manifests: manifests}

	if c.Longhorn.Backup != nil {
		if l.Credentials, err = longhorn.CredentialsManifest(c, sopsfile.DecryptFile); err != nil {
			return nil, err
		}
	}

	return l, nil
}

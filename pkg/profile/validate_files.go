// Validation of the files a profile names, read the way talforge will read them.

package profile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// validateFiles checks every file the profile names the way talforge will read it: inside the
// project root or externalDirs (symlinks followed), a regular file of at most MaxFileBytes, and
// for YAML, an alias expansion within MaxYAMLNodes. A file that passes here cannot make a later
// stage read something else or expand without bound.
func (c *Cluster) validateFiles(ctx context.Context, e *problems) {
	for i, d := range c.ExternalDirs {
		if fi, err := os.Stat(c.Resolve(d)); err != nil || !fi.IsDir() {
			e.add(fmt.Sprintf("externalDirs[%d]", i), "list existing directories, absolute or relative to the project root "+c.Root(), "%s is not a directory", c.Resolve(d))
		}
	}

	if p := c.Proxmox; p != nil {
		c.checkFile(e, "proxmox.tokenFile", p.TokenFile, sopsFile)
		c.checkFile(e, "proxmox.caFile", p.CAFile, pemFile)
	}

	if l := c.Longhorn; l != nil && l.Backup != nil && l.Backup.CredentialsFile != "" {
		c.checkFile(e, "longhorn.backup.credentialsFile", l.Backup.CredentialsFile, sopsFile)
	}

	check := func(field string, files []string) {
		for i, f := range files {
			if ctx.Err() != nil {
				return
			}

			c.checkFile(e, fmt.Sprintf("%s[%d]", field, i), f, patchFile)
		}
	}

	check("patches.all", c.Patches.All)
	check("patches.controlplane", c.Patches.ControlPlane)
	check("patches.worker", c.Patches.Worker)

	for _, name := range slices.Sorted(maps.Keys(c.Patches.Nodes)) {
		if _, ok := c.Node(name); !ok {
			e.add("patches.nodes."+name, "use a name from nodes[].name", "there is no node named %q", name)
		}

		check("patches.nodes."+name, c.Patches.Nodes[name])
	}
}

// fileKind is what a referenced file holds.
type fileKind int

const (
	pemFile   fileKind = iota // proxmox.caFile: read as is
	sopsFile                  // a SOPS-encrypted YAML file: its structure is plain YAML
	patchFile                 // a Talos patch: YAML or JSON, several documents allowed
)

// checkFile reports a referenced file that is missing, outside the project root, not a regular
// file, too large, or (YAML) expands too far. Whether a patch applies to a Talos config is
// checked when configs are generated, by machinery itself.
func (c *Cluster) checkFile(e *problems, field, path string, kind fileKind) {
	if path == "" {
		return
	}

	what := "file"
	if kind == patchFile {
		what = "patch"
	}

	data, err := c.ReadFile(path)

	var (
		outside *OutsideRootError
		limit   *LimitError
	)

	switch {
	case errors.As(err, &outside):
		e.add(field, outsideRootHint, "%s %s: %v", what, path, outside)

		return
	case errors.As(err, &limit):
		e.add(field, "keep each file under 1 MiB", "%s %v", what, limit)

		return
	case err != nil:
		e.add(field, "paths are relative to the project root "+c.Root(), "%s %s: %v", what, c.Resolve(path), unwrapPathError(err))

		return
	case kind == pemFile:
		return
	}

	err = CheckYAML(c.Resolve(path), data)

	switch {
	case errors.As(err, &limit):
		e.add(field, limitHint, "%s %v", what, limit)
	case err != nil && kind == patchFile:
		e.add(field, "a patch is a Talos strategic-merge YAML (may hold several documents) or a JSON6902 list", "patch %s is not valid YAML: %v", c.Resolve(path), strings.TrimPrefix(err.Error(), "yaml: "))
	}

	// A secret file that is not YAML is for sops to report when it decrypts it.
}

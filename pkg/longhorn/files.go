package longhorn

import (
	"github.com/talforge/talforge/pkg/gitops"
	"github.com/talforge/talforge/pkg/profile"
)

// Output files `talforge generate` writes for Longhorn, inside clusters/<name>/.
const (
	ValuesFile    = "longhorn/values.yaml"
	ManifestsFile = "longhorn/manifests.yaml"
	IAMPolicyFile = "aws/iam-policy.json"
)

// Files renders the Helm values and manifests for the profile's chart version and the backup
// bucket's IAM policy: what `talforge longhorn install` applies, reviewable in Git. No secrets.
// It is a generate.Renderer; a profile without Longhorn gives no files.
func Files(c *profile.Cluster) ([]gitops.File, error) {
	if c.Longhorn == nil {
		return nil, nil
	}

	values, err := RenderValues(c)
	if err != nil {
		return nil, err
	}

	manifests, err := RenderManifests(c)
	if err != nil {
		return nil, err
	}

	files := []gitops.File{{Path: ValuesFile, Data: values}, {Path: ManifestsFile, Data: manifests}}

	if c.Longhorn.Backup != nil {
		policy, err := IAMPolicy(c)
		if err != nil {
			return nil, err
		}

		files = append(files, gitops.File{Path: IAMPolicyFile, Data: policy})
	}

	return files, nil
}

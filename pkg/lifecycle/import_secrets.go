package lifecycle

import (
	"context"
	"fmt"
	"os"
	"slices"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/proxmox"
)

// Where import stores the secret inputs it takes over, relative to the project root.
const (
	importedCredentials = "secrets/aws-backup.sops.yaml"
	importedToken       = "secrets/proxmox.sops.yaml"
)

// backupCredentialKeys are the keys of Longhorn's backup credential Secret that talforge's
// credentials file carries (longhorn-manager reads them as environment variables).
var backupCredentialKeys = []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINTS", "AWS_CERT", "VIRTUAL_HOSTED_STYLE"}

// secretInputs are the secret input files import writes, SOPS-encrypted, after every check:
// the adopted cluster's own backup keys and PVE token, so that nothing it runs on is lost and
// nothing has to be typed again. Plaintext stays in memory.
type secretInputs map[string][]byte

func (s secretInputs) clear() {
	for _, v := range s {
		clear(v)
	}
}

// takeBackupCredentials reads the backup credential Secret Longhorn uses and points the
// profile's credentialsFile at the file import will write.
func (s secretInputs) takeBackupCredentials(ctx context.Context, cs kubernetes.Interface, l *profile.Longhorn) error {
	if l == nil || l.Backup == nil || l.Backup.CredentialSecret == "" {
		return nil
	}
	sec, err := cs.CoreV1().Secrets(longhorn.Namespace).Get(ctx, l.Backup.CredentialSecret, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading Longhorn's backup credential Secret %s/%s: %w", longhorn.Namespace, l.Backup.CredentialSecret, err)
	}
	plain := map[string]string{}
	for _, k := range backupCredentialKeys {
		if v, ok := sec.Data[k]; ok {
			plain[k] = string(v)
		}
	}
	if plain["AWS_ACCESS_KEY_ID"] == "" || plain["AWS_SECRET_ACCESS_KEY"] == "" {
		return fmt.Errorf("the backup credential Secret %s/%s Longhorn uses has no AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", longhorn.Namespace, l.Backup.CredentialSecret)
	}
	data, err := yaml.Marshal(plain)
	if err != nil {
		return err
	}
	s[importedCredentials] = data
	l.Backup.CredentialsFile = importedCredentials
	return nil
}

// takeToken keeps the PVE token import connected with ($TALFORGE_PVE_TOKEN) as the profile's
// token file.
func (s secretInputs) takeToken(p *profile.Proxmox) {
	tok := os.Getenv(proxmox.EnvToken)
	if tok == "" || p == nil {
		return
	}
	data, err := yaml.Marshal(map[string]string{"token": tok})
	if err != nil {
		return
	}
	s[importedToken] = data
	p.TokenFile = importedToken
}

// paths lists the files in a stable order.
func (s secretInputs) paths() []string {
	var out []string
	for p := range s {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// kubeClient connects to the adopted cluster's Kubernetes API with its kubeconfig.
func kubeClient(kubeconfig []byte) (kubernetes.Interface, error) {
	cfg, err := longhorn.RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// kubeNodeIPs lists the InternalIP of every Kubernetes node, sorted.
func kubeNodeIPs(ctx context.Context, cs kubernetes.Interface) ([]string, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the cluster's Kubernetes nodes: %w", err)
	}
	var ips []string
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ips = append(ips, a.Address)
				break
			}
		}
	}
	slices.Sort(ips)
	return ips, nil
}

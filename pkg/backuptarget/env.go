package backuptarget

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
)

// Keys of the credential Secret that Longhorn's S3 driver reads (backupstore
// s3/s3_service.go; longhorn docs "Set up AWS S3 backupstore").
const (
	KeyAccessKeyID        = "AWS_ACCESS_KEY_ID"
	KeySecretAccessKey    = "AWS_SECRET_ACCESS_KEY"
	KeySessionToken       = "AWS_SESSION_TOKEN"
	KeyEndpoints          = "AWS_ENDPOINTS"
	KeyCert               = "AWS_CERT"
	KeyVirtualHostedStyle = "VIRTUAL_HOSTED_STYLE"
)

// Credentials are the S3 settings of a backup target: the data of the credential Secret,
// key for key.
type Credentials map[string]string

// knownKeys are the variables WithEnv controls: it sets the ones Credentials has and unsets
// the others, so nothing of the caller's own AWS set-up (a profile, a region, another
// endpoint) leaks into a backup target's requests.
var knownKeys = []string{
	KeyAccessKeyID, KeySecretAccessKey, KeySessionToken, KeyEndpoints, KeyCert, KeyVirtualHostedStyle,
	"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
	"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
	"AWS_EC2_METADATA_DISABLED",
}

// Validate reports what is missing for Longhorn's S3 driver to authenticate.
func (c Credentials) Validate() error {
	var missing []string
	for _, k := range []string{KeyAccessKeyID, KeySecretAccessKey} {
		if strings.TrimSpace(c[k]) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the credentials have no %s: Longhorn's S3 driver needs both %s and %s", strings.Join(missing, " and "), KeyAccessKeyID, KeySecretAccessKey)
	}
	if v, ok := c[KeyVirtualHostedStyle]; ok && v != "true" && v != "false" {
		return fmt.Errorf("%s is %q: Longhorn's S3 driver reads only \"true\" or \"false\"", KeyVirtualHostedStyle, v)
	}
	for k := range c {
		// HTTP_PROXY, HTTPS_PROXY and NO_PROXY are credential Secret keys too: Longhorn hands
		// them to the backup process, and its S3 client takes its proxy from the environment
		// (backupstore http/client.go, httpproxy.FromEnvironment).
		if strings.HasPrefix(k, "AWS_") || k == KeyVirtualHostedStyle || k == "HTTP_PROXY" || k == "HTTPS_PROXY" || k == "NO_PROXY" {
			continue
		}
		return fmt.Errorf("unknown key %q in the credentials: Longhorn reads %s, HTTP_PROXY, HTTPS_PROXY, NO_PROXY", k, strings.Join(knownKeys[:6], ", "))
	}
	return nil
}

// envMu serialises every use of the process environment for a backup target: the
// environment is the one way to configure Longhorn's S3 driver, and it is per process.
var envMu sync.Mutex

// WithEnv runs fn with the process environment set to creds, as longhorn-manager sets the
// environment of the process that talks to the backup store, and restores the previous
// environment afterwards. Calls are serialised. The EC2 metadata lookup is disabled so a
// machine outside AWS does not wait for it when a key is missing.
func WithEnv(creds Credentials, fn func() error) error {
	envMu.Lock()
	defer envMu.Unlock()

	saved := map[string]*string{}
	for _, k := range knownKeys {
		if v, ok := os.LookupEnv(k); ok {
			saved[k] = &v
		} else {
			saved[k] = nil
		}
		_ = os.Unsetenv(k)
	}
	defer func() {
		for k, v := range saved {
			if v == nil {
				_ = os.Unsetenv(k)
			} else {
				_ = os.Setenv(k, *v)
			}
		}
	}()

	keys := make([]string, 0, len(creds))
	for k := range creds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := saved[k]; !ok {
			saved[k] = nil
			if v, had := os.LookupEnv(k); had {
				saved[k] = &v
			}
		}
		if err := os.Setenv(k, creds[k]); err != nil {
			return fmt.Errorf("set %s: %w", k, err)
		}
	}
	if _, ok := creds["AWS_EC2_METADATA_DISABLED"]; !ok {
		_ = os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	}
	// An empty shared config file keeps ~/.aws of the user running talforge out of it.
	if _, ok := creds["AWS_CONFIG_FILE"]; !ok {
		_ = os.Setenv("AWS_CONFIG_FILE", os.DevNull)
		_ = os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	}

	return fn()
}

package longhorn

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/talforge/talforge/pkg/profile"
)

// TestCredentialsBounded: decrypted credentials are bounded before they are decoded (a sops
// file decrypts to whatever its author wrote), and the error quotes no value.
func TestCredentialsBounded(t *testing.T) {
	c := newProject(t, "1.10.2", nil).load(t)

	var laughs strings.Builder

	laughs.WriteString("AWS_ACCESS_KEY_ID: AKIA1\nAWS_SECRET_ACCESS_KEY: s3cr3t\nx0: &x0 [s3cr3t, s3cr3t, s3cr3t, s3cr3t, s3cr3t, s3cr3t, s3cr3t, s3cr3t, s3cr3t]\n")

	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&laughs, "x%d: &x%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*x%d, ", i-1), 9), ", "))
	}

	for _, tc := range []struct{ name, plain, want string }{
		{"billion laughs", laughs.String(), "the file passes 100000 YAML nodes here"},
		{"larger than 1 MiB", "AWS_ACCESS_KEY_ID: AKIA1\nAWS_SECRET_ACCESS_KEY: s3cr3t\n#" + strings.Repeat("x", profile.MaxFileBytes) + "\n", "is larger than 1048576 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()

			_, err := credentialsSecret(c, func(string) ([]byte, error) { return []byte(tc.plain), nil })

			switch {
			case err == nil:
				t.Fatal("accepted")
			case !errors.Is(err, profile.ErrTooLarge) || !strings.Contains(err.Error(), tc.want):
				t.Errorf("want ErrTooLarge with %q, got %v", tc.want, err)
			case strings.Contains(err.Error(), "s3cr3t"):
				t.Errorf("the error quotes a value: %v", err)
			}

			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

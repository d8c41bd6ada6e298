// The Server: finding weed, launching and stopping it, buckets and clients.

package s3server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/talforge/talforge/internal/testenv/testproc"
)

// WeedVersion is the SeaweedFS version scripts/tools.sh builds (its WEED_VERSION); the
// upstream files cited in this package are read at this version.
const WeedVersion = "v0.0.0-20261109003541-7506e5f91cd6"

// Environment variables understood by this package.
const (
	// EnvWeed is the path of a weed executable.
	EnvWeed = "TALFORGE_WEED"
	// EnvRequire=1 turns "weed missing" from a skip into a test failure (CI sets it).
	EnvRequire = "TALFORGE_REQUIRE_S3"
)

// DefaultRegion is the signing region of [Server.Client] when [Options] name none.
// SeaweedFS accepts any region in the SigV4 scope (it signs with the one the request
// names, weed/s3api/auth_signature_v4.go), so this only has to be consistent.
const DefaultRegion = "us-east-1"

// ErrWeedMissing is returned (wrapped) when no weed executable can be found.
var ErrWeedMissing = errors.New("SeaweedFS weed binary not found")

// FindWeed returns the weed executable: $TALFORGE_WEED when set, else
// ~/.cache/talforge/bin/weed where scripts/tools.sh puts it, with ~ taken from the user
// database first (tests may point HOME at a temporary directory) and from $HOME second.
// The error wraps ErrWeedMissing and says how to build it.
func FindWeed() (string, error) {
	if p := os.Getenv(EnvWeed); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%w: %s=%s: %v", ErrWeedMissing, EnvWeed, p, err)
		}
		return p, nil
	}
	var homes []string
	if u, err := user.Current(); err == nil && u.HomeDir != "" {
		homes = append(homes, u.HomeDir)
	}
	if h, err := os.UserHomeDir(); err == nil && !slices.Contains(homes, h) {
		homes = append(homes, h)
	}
	var tried []string
	for _, h := range homes {
		p := filepath.Join(h, ".cache", "talforge", "bin", "weed")
		if checkExecutable(p) == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("%w: no executable at %s; build it with `bash scripts/tools.sh weed` (~8 min cold, cached afterwards) or point %s at one",
		ErrWeedMissing, strings.Join(tried, " or "), EnvWeed)
}

func checkExecutable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// Options configure [Launch]. The zero value is usable: an admin identity and nothing else.
type Options struct {
	// Users are identities besides the admin one.
	Users []User
	// Buckets are created by the admin identity before Launch returns.
	Buckets []string
	// Region is the signing region of [Server.Client] (default [DefaultRegion]).
	Region string
	// Weed is the weed executable; empty means [FindWeed].
	Weed string
	// ReadyTimeout bounds the wait until the server takes writes (default 60 s; it takes
	// ~5 s).
	ReadyTimeout time.Duration
}

// Server is a running SeaweedFS: `weed mini`, master, volume server, filer, S3 gateway
// and admin server in one process.
type Server struct {
	// Endpoint is the S3 API, http://127.0.0.1:PORT.
	Endpoint string
	// Region is the signing region clients should use.
	Region string
	// AdminAccessKey and AdminSecretKey are an identity with SeaweedFS's Admin action.
	AdminAccessKey, AdminSecretKey string
	// Dir holds the server's data, config and log (weed.log); removed by Stop.
	Dir string

	proc    *testproc.Process
	sockets []string
}

// adminName is the admin identity's name; Options.Users may not reuse it.
const adminName = "talforge-admin"

// Launch starts a fresh server. A port taken between choosing and binding is retried
// with new ports.
func Launch(ctx context.Context, opts Options) (*Server, error) {
	if opts.Weed == "" {
		p, err := FindWeed()
		if err != nil {
			return nil, err
		}
		opts.Weed = p
	}
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	if err := validateUsers(opts.Users); err != nil {
		return nil, err
	}
	return testproc.RetryPortRace(ctx, func(ctx context.Context) (*Server, error) { return launchOnce(ctx, opts) })
}

// Stop kills weed (its whole process group) and removes Dir and weed's sockets. Safe to
// call more than once.
func (s *Server) Stop() error {
	if s == nil {
		return nil
	}
	var errs []error
	// SIGKILL at once: the data is throw-away, and a graceful weed mini shutdown takes
	// ~1.5 s per server.
	if err := s.proc.Stop(0); err != nil {
		errs = append(errs, err)
	}
	s.proc = nil
	for _, sock := range s.sockets {
		// Only sockets: the path is weed's fixed pattern in the shared /tmp.
		if st, err := os.Lstat(sock); err == nil && st.Mode()&os.ModeSocket != 0 {
			if err := os.Remove(sock); err != nil {
				errs = append(errs, err)
			}
		}
	}
	s.sockets = nil
	if s.Dir != "" {
		if err := os.RemoveAll(s.Dir); err != nil {
			errs = append(errs, err)
		}
		s.Dir = ""
	}
	return errors.Join(errs...)
}

// CreateBucket creates a bucket as the admin identity. A bucket that already exists is
// not an error.
func (s *Server) CreateBucket(ctx context.Context, name string) error {
	_, err := s.Client(s.AdminAccessKey, s.AdminSecretKey).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	if ErrorCode(err) == "BucketAlreadyOwnedByYou" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
}

// ErrorCode is the S3 error code of err ("AccessDenied", "NoSuchKey"; "" when err carries
// none, as a network error does).
func ErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// Credentials returns the keys of Longhorn's backup-target credential Secret for an
// S3-compatible store, for user u of this server.
func (s *Server) Credentials(u User) map[string]string {
	return map[string]string{
		"AWS_ACCESS_KEY_ID":     u.AccessKey,
		"AWS_SECRET_ACCESS_KEY": u.SecretKey,
		"AWS_ENDPOINTS":         s.Endpoint,
	}
}

// Client returns an S3 client for the endpoint with static keys and path-style
// addressing (as Longhorn's backupstore uses for AWS_ENDPOINTS). It reads no AWS
// environment or config files.
func (s *Server) Client(accessKey, secretKey string) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint),
		Region:       s.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
		UsePathStyle: true,
	})
}

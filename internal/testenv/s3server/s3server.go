package s3server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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

// User is one S3 identity of the server.
type User struct {
	// Name identifies the user in the SeaweedFS config and its log.
	Name string
	// AccessKey and SecretKey are the user's static credentials; both required.
	AccessKey, SecretKey string
	// Actions are SeaweedFS identity actions: "Read:bucket", "Write:bucket",
	// "List:bucket", "Tagging:bucket", "Admin", optionally with an object path and
	// wildcards ("Read:bucket/backups/*"). See [ActionsFromIAMPolicy]. A user with
	// neither Actions nor Policy authenticates but may do nothing.
	Actions []string
	// Policy is an AWS IAM identity policy document (JSON) attached to the user instead
	// of Actions (not both: an attached policy makes SeaweedFS ignore Actions). SeaweedFS
	// evaluates it with its IAM policy engine per S3 operation
	// (weed/s3api/auth_credentials.go evaluateAttachedIAMPolicies, ResolveS3Action), so
	// unlike Actions it tells s3:PutObject from s3:DeleteObject: a test can hand it
	// exactly the bytes `talforge iam-policy` prints.
	Policy []byte
}

// NewUser returns a user with fresh random keys in AWS's shapes (20-character access
// key, 40-character secret).
func NewUser(name string, actions ...string) User {
	return User{Name: name, AccessKey: "AKIA" + randomString(16, upperAlnum), SecretKey: randomString(40, secretChars), Actions: actions}
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

// identity, credential and policy are the JSON shapes of iam_pb.Identity, Credential and
// Policy (weed/pb/iam.proto), parsed with protojson by weed/filer/s3iam_conf.go.
type identity struct {
	Name        string       `json:"name"`
	Credentials []credential `json:"credentials"`
	Actions     []string     `json:"actions"`
	PolicyNames []string     `json:"policyNames,omitempty"`
}

type policy struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

type credential struct {
	AccessKey string `json:"accessKey"`
	SecretKey string `json:"secretKey"`
}

func launchOnce(ctx context.Context, opts Options) (_ *Server, err error) {
	dir, err := os.MkdirTemp("", "talforge-s3server-")
	if err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	admin := NewUser(adminName, "Admin")
	s := &Server{Region: opts.Region, AdminAccessKey: admin.AccessKey, AdminSecretKey: admin.SecretKey, Dir: dir}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()

	// A config file is what switches authentication on: with one, weed denies every
	// request it cannot match to an identity; without one (and no identities) it allows
	// everything (weed/s3api/auth_credentials.go, NewIdentityAccessManagementWithStore).
	cfg := struct {
		Identities []identity `json:"identities"`
		Policies   []policy   `json:"policies,omitempty"`
	}{}
	for _, u := range append([]User{admin}, opts.Users...) {
		id := identity{
			Name:        u.Name,
			Credentials: []credential{{AccessKey: u.AccessKey, SecretKey: u.SecretKey}},
			Actions:     append([]string{}, u.Actions...),
		}
		if u.Policy != nil {
			// Policies are attached by name (iam_pb.Identity.policy_names).
			id.PolicyNames = []string{u.Name + "-policy"}
			cfg.Policies = append(cfg.Policies, policy{Name: u.Name + "-policy", Content: string(u.Policy)})
		}
		cfg.Identities = append(cfg.Identities, id)
	}
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("s3 config: %w", err)
	}
	cfgPath := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(cfgPath, cfgJSON, 0o600); err != nil {
		return nil, fmt.Errorf("s3 config: %w", err)
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}

	ports, err := testproc.FreePorts(numPorts)
	if err != nil {
		return nil, err
	}
	s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", ports[portS3])
	s.sockets = grpcSockets(ports)
	s.proc, err = testproc.Start(ctx, testproc.Spec{
		Name: "weed", Path: opts.Weed, Args: miniArgs(dataDir, cfgPath, ports),
		Env: childEnv("HOME=" + dir), Dir: dir, LogPath: filepath.Join(dir, "weed.log"),
	})
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx, opts.ReadyTimeout); err != nil {
		return nil, err
	}
	for _, b := range opts.Buckets {
		if err := s.CreateBucket(ctx, b); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// childEnv is the test's environment without the variables weed reads as configuration,
// plus extra. Dropped: WEED_* (viper binds every one to a setting), AWS_ACCESS_KEY_ID /
// AWS_SECRET_ACCESS_KEY (weed/s3api/auth_credentials.go loadEnvironmentVariableCredentials
// turns them into an extra Admin identity), S3_* (S3_BUCKET, S3_EXTERNAL_URL are flag
// fallbacks) and HOME (weed reads ~/.seaweedfs/*.toml; extra points it at the run dir).
func childEnv(extra ...string) []string {
	return testproc.Environ(func(name string) bool {
		return strings.HasPrefix(name, "WEED_") || strings.HasPrefix(name, "AWS_") ||
			strings.HasPrefix(name, "S3_") || name == "HOME"
	}, extra...)
}

// Indexes into the ports miniArgs is given.
const (
	portMaster = iota
	portMasterGRPC
	portVolume
	portVolumeGRPC
	portFiler
	portFilerGRPC
	portS3
	portS3GRPC
	portWebDAV
	portAdmin
	portAdminGRPC
	numPorts
)

// miniArgs is `weed mini` (master, volume, filer, S3 gateway and admin in one process)
// with every listener on 127.0.0.1 and every port explicit: weed derives an unset gRPC
// port as http+10000, which may be taken, and mini silently moves a busy default port.
//
// mini over `weed server -s3` (measured on 2 cores): both answer an authenticated
// ListBuckets after 2-4 s, but the first object write succeeds ~5 s after start with mini
// and ~11 s with server, whose log shows the master deferring the first volume id ~5 s
// after minting a fresh topology and the filer joining the lock ring only ~9 s in. mini
// lifts that hold on its embedded volume server's first report (weed/topology/topology.go
// ReleaseAllocationOnFirstReport) and grows one volume at a time (weed/command/mini.go
// ensureMiniVolumeGrowthDefaults). Same RSS (~150 MB, ~30 MB of it anonymous).
func miniArgs(dataDir, cfgPath string, ports []int) []string {
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	return []string{
		"mini",
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-dir=" + dataDir,
		"-master.port=" + p(portMaster), "-master.port.grpc=" + p(portMasterGRPC),
		"-volume.port=" + p(portVolume), "-volume.port.grpc=" + p(portVolumeGRPC),
		"-filer.port=" + p(portFiler), "-filer.port.grpc=" + p(portFilerGRPC),
		"-s3.port=" + p(portS3), "-s3.port.grpc=" + p(portS3GRPC),
		"-s3.config=" + cfgPath,
		// Off, but mini still checks their ports, so they get free ones too.
		"-webdav=false", "-webdav.port=" + p(portWebDAV),
		// The admin server (maintenance workers) always runs; only its UI is optional.
		"-admin.ui=false", "-admin.port=" + p(portAdmin), "-admin.port.grpc=" + p(portAdminGRPC), "-admin.port.legacy=0",
		// The embedded IAM API (on by default, read-only by default) takes writes, so
		// AddUser can create users at run time; managing one's own keys needs an iam:
		// grant, as in AWS (weed/s3api/s3api_embedded_iam.go AuthorizeIamAction).
		"-s3.iam.readOnly=false", "-s3.iam.selfServiceRequiresGrant=true",
		// Catalog servers the S3 gateway starts by default.
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		// HTTP unix sockets default to /tmp/seaweedfs-*-<port>.sock; the gRPC ones cannot
		// be moved (see grpcSockets).
		"-filer.localSocket=" + filepath.Join(dataDir, "filer.sock"),
		"-s3.localSocket=" + filepath.Join(dataDir, "s3.sock"),
		// As AWS: a put into a missing bucket is NoSuchBucket, even for the admin.
		"-s3.autoCreateBucket=false",
		// Never phone home from a test.
		"-master.telemetry=false",
		// Small volumes (mini's minimum), at most a few: the tests store kilobytes.
		"-master.volumeSizeLimitMB=64", "-volume.max=4",
	}
}

// grpcSockets are the unix sockets weed mini opens next to its gRPC ports, at paths
// fixed in weed/command/mini.go (pb.RegisterLocalGrpcSocket); Stop removes them.
func grpcSockets(ports []int) []string {
	var socks []string
	for _, sv := range []struct {
		name string
		port int
	}{{"master", portMasterGRPC}, {"volume", portVolumeGRPC}, {"filer", portFilerGRPC}, {"s3", portS3GRPC}, {"admin", portAdminGRPC}} {
		socks = append(socks, fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", sv.name, ports[sv.port]))
	}
	return socks
}

// bindRace matches weed's complaints about a port taken since FreePorts chose it.
var bindRace = regexp.MustCompile(`address already in use|is not available on|reserved for gRPC calculation`)

// probeBucket is created, written to and removed by waitReady.
const probeBucket = "talforge-s3server-probe"

// waitReady waits until the server takes writes: an authenticated ListBuckets (the
// gateway listens, the identity file is loaded, the filer answers), then a put into a
// probe bucket, which also needs the filer's lock ring (weed logs "FILER LOCK ... no lock
// server found" until the filer has announced itself) and a volume. Without the second
// step the first backup of a test would absorb that second or so of start-up.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	// This loop is the retry: one attempt per call.
	client := s3.New(s.Client(s.AdminAccessKey, s.AdminSecretKey).Options(), func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	steps := []struct {
		name string
		do   func(context.Context) error
	}{
		{"ListBuckets", func(c context.Context) error {
			_, err := client.ListBuckets(c, &s3.ListBucketsInput{})
			return err
		}},
		{"CreateBucket " + probeBucket, func(c context.Context) error { return s.CreateBucket(c, probeBucket) }},
		{"PutObject " + probeBucket + "/probe", func(c context.Context) error {
			_, err := client.PutObject(c, &s3.PutObjectInput{Bucket: aws.String(probeBucket), Key: aws.String("probe"), Body: strings.NewReader("probe")})
			return err
		}},
		{"DeleteObject " + probeBucket + "/probe", func(c context.Context) error {
			_, err := client.DeleteObject(c, &s3.DeleteObjectInput{Bucket: aws.String(probeBucket), Key: aws.String("probe")})
			return err
		}},
		{"DeleteBucket " + probeBucket, func(c context.Context) error {
			_, err := client.DeleteBucket(c, &s3.DeleteBucketInput{Bucket: aws.String(probeBucket)})
			return err
		}},
	}
	for _, step := range steps {
		for {
			if err := s.proc.StartupErr(30, bindRace); err != nil {
				return err
			}
			// Short attempts: a request sent before the port listens fails at once, one
			// sent during start-up may hang.
			reqCtx, cancelReq := context.WithTimeout(ctx, 5*time.Second)
			err := step.do(reqCtx)
			cancelReq()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("SeaweedFS S3 gateway %s not ready after %s (last %s: %v); last log lines:\n%s",
					s.Endpoint, timeout, step.name, err, s.proc.LogTail(30))
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
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

func validateUsers(users []User) error {
	names := map[string]bool{adminName: true}
	keys := map[string]bool{}
	for _, u := range users {
		switch {
		case u.Name == "":
			return errors.New("s3server: a user has no name")
		case names[u.Name]:
			return fmt.Errorf("s3server: user name %q used twice (or reserved for the admin identity)", u.Name)
		case u.AccessKey == "" || u.SecretKey == "":
			return fmt.Errorf("s3server: user %s: access key and secret key are both required (see NewUser)", u.Name)
		case keys[u.AccessKey]:
			return fmt.Errorf("s3server: user %s: access key %s used twice", u.Name, u.AccessKey)
		case u.Policy != nil && len(u.Actions) > 0:
			return fmt.Errorf("s3server: user %s: give Actions or Policy, not both (SeaweedFS ignores Actions once a policy is attached)", u.Name)
		case u.Policy != nil && !json.Valid(u.Policy):
			return fmt.Errorf("s3server: user %s: Policy is not valid JSON", u.Name)
		}
		names[u.Name], keys[u.AccessKey] = true, true
		for _, a := range u.Actions {
			if err := checkAction(a); err != nil {
				return fmt.Errorf("s3server: user %s: %w", u.Name, err)
			}
		}
	}
	return nil
}

// knownActions are the identity actions weed/s3api/s3_constants/s3_actions.go defines.
// weed ignores an action it does not know, which would turn a typo into a silent denial.
var knownActions = []string{
	"Read", "ReadAcp", "Write", "WriteAcp", "Admin", "Tagging", "List", "DeleteBucket",
	"BypassGovernanceRetention", "GetObjectRetention", "PutObjectRetention",
	"GetObjectLegalHold", "PutObjectLegalHold",
	"GetBucketObjectLockConfiguration", "PutBucketObjectLockConfiguration",
	"PutBucketPolicy", "DeleteBucketPolicy", "PutBucketCors", "DeleteBucketCors",
	"PutBucketVersioning", "PutBucketQuota", "GetBucketQuota",
	"ListBucketMultipartUploads", "ListMultipartUploadParts",
}

func checkAction(a string) error {
	name, _, _ := strings.Cut(a, ":")
	if !slices.Contains(knownActions, name) {
		return fmt.Errorf("unknown SeaweedFS action %q (known: %s)", a, strings.Join(knownActions, ", "))
	}
	return nil
}

const (
	upperAlnum  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	secretChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

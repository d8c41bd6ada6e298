// Starting `weed mini`: the identity config, the ports and the readiness probe.

package s3server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/talforge/talforge/internal/testenv/testproc"
)

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

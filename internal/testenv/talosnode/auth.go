package talosnode

import (
	"context"
	"sync"
	"time"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/resource/meta"
	"github.com/cosi-project/runtime/pkg/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"github.com/siderolabs/talos/pkg/machinery/role"
)

var (
	readers   = role.MakeSet(role.Admin, role.Operator, role.Reader)
	operators = role.MakeSet(role.Admin, role.Operator)
	admins    = role.MakeSet(role.Admin)
	nobody    = role.MakeSet()
)

// methodRoles lists which roles may call what, as Talos' authorizer rules do
// (internal/app/machined/pkg/system/services/machined.go). Methods not listed need os:admin.
var methodRoles = map[string]role.Set{
	machine.MachineService_ApplyConfiguration_FullMethodName: admins,
	machine.MachineService_Bootstrap_FullMethodName:          admins,
	machine.MachineService_Kubeconfig_FullMethodName:         admins,
	machine.MachineService_Reboot_FullMethodName:             operators,
	machine.MachineService_Upgrade_FullMethodName:            admins,
	machine.LifecycleService_Upgrade_FullMethodName:          admins,
	machine.ImageService_Pull_FullMethodName:                 operators,
	machine.MachineService_Version_FullMethodName:            readers,
	machine.MachineService_ServiceList_FullMethodName:        readers,
	machine.MachineService_EtcdMemberList_FullMethodName:     readers,
	cosiv1alpha1.State_Get_FullMethodName:                    readers,
	cosiv1alpha1.State_List_FullMethodName:                   readers,
	cosiv1alpha1.State_Watch_FullMethodName:                  readers,
	cosiv1alpha1.State_Create_FullMethodName:                 nobody,
	cosiv1alpha1.State_Update_FullMethodName:                 nobody,
	cosiv1alpha1.State_Destroy_FullMethodName:                nobody,
	cosiv1alpha1.State_Teardown_FullMethodName:               nobody,
	cosiv1alpha1.State_TeardownAndDestroy_FullMethodName:     nobody,
}

// errNotAuthorized is Talos' authorizer error (pkg/grpc/middleware/authz ErrNotAuthorized).
var errNotAuthorized = status.Error(codes.PermissionDenied, "not authorized")

type rolesKey struct{}

func rolesFrom(ctx context.Context) role.Set {
	if roles, ok := ctx.Value(rolesKey{}).(role.Set); ok {
		return roles
	}

	return role.Zero
}

// authorize attaches the caller's roles to ctx and refuses calls those roles may not make. In maintenance
// mode every caller is os:reader and ApplyConfiguration is allowed anyway ("for maintenance only, verified
// in the handler").
func (n *Node) authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	n.mu.Lock()
	maintenance := n.active == nil
	n.mu.Unlock()

	roles := role.MakeSet(role.Reader)

	if !maintenance {
		roles = peerRoles(ctx)
	}

	ctx = context.WithValue(ctx, rolesKey{}, roles)

	if maintenance && fullMethod == machine.MachineService_ApplyConfiguration_FullMethodName {
		return ctx, nil
	}

	allowed, ok := methodRoles[fullMethod]
	if !ok {
		allowed = admins
	}

	if !roles.IncludesAny(allowed) {
		return ctx, errNotAuthorized
	}

	return ctx, nil
}

// peerRoles reads the roles from the verified client certificate's Organization, as Talos does.
func peerRoles(ctx context.Context) role.Set {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return role.Zero
	}

	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.PeerCertificates) == 0 {
		return role.Zero
	}

	roles, _ := role.Parse(info.State.PeerCertificates[0].Subject.Organization)

	return roles
}

// cosiAccessRule is the COSI state filter: read-only access, Sensitive resources only for os:admin (Talos'
// resources.AccessPolicy).
func (n *Node) cosiAccessRule(ctx context.Context, access state.Access) error {
	if !access.Verb.Readonly() {
		return errNotAuthorized
	}

	if n.sensitive[access.ResourceType] && !rolesFrom(ctx).Includes(role.Admin) {
		return errNotAuthorized
	}

	return nil
}

// sensitiveTypes collects the sensitivity of the resource types the node serves from their own definitions.
func sensitiveTypes() map[resource.Type]bool {
	definitions := []meta.ResourceDefinitionProvider{
		&config.MachineConfig{},
		config.NewMachineType(),
		runtime.NewMachineStatus(),
		runtime.NewExtensionStatus(runtime.NamespaceName, ""),
	}

	sensitive := map[resource.Type]bool{}

	for _, d := range definitions {
		spec := d.ResourceDefinition()
		sensitive[spec.Type] = spec.Sensitivity == meta.Sensitive
	}

	return sensitive
}

func (n *Node) countCall(fullMethod string) {
	n.mu.Lock()
	defer n.mu.Unlock()

	n.calls[fullMethod]++
}

type interruptSpec struct {
	afterEffect bool
}

func (n *Node) takeInterrupt(fullMethod string) (interruptSpec, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()

	spec, ok := n.interrupts[fullMethod]
	if ok {
		delete(n.interrupts, fullMethod)
	}

	return spec, ok
}

// interrupted runs a call during which the node reboots: the connection drops before any response.
func (n *Node) interrupted(ctx context.Context, spec interruptSpec, call func(context.Context) error) error {
	if spec.afterEffect {
		_ = call(ctx) // the response never reaches the client anyway

		// The effect may itself have scheduled a reboot (an accepted apply installs): run it now.
		if fn := takeAfterResponse(ctx); fn != nil {
			fn()

			return status.Error(codes.Unavailable, "node rebooted during the call")
		}
	}

	n.log("rebooting in the middle of a call")
	n.reboot(runtime.MachineStageRebooting, n.opts.BootDelay)

	<-ctx.Done()

	return status.Error(codes.Unavailable, "node rebooted during the call")
}

func (n *Node) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	n.countCall(info.FullMethod)

	ctx, err := n.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}

	if spec, ok := n.takeInterrupt(info.FullMethod); ok {
		return nil, n.interrupted(ctx, spec, func(ctx context.Context) error {
			_, err := handler(ctx, req)

			return err
		})
	}

	return handler(ctx, req)
}

func (n *Node) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	n.countCall(info.FullMethod)

	ctx, err := n.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}

	wrapped := &ctxStream{ServerStream: ss, ctx: ctx}

	if spec, ok := n.takeInterrupt(info.FullMethod); ok {
		return n.interrupted(ctx, spec, func(context.Context) error { return handler(srv, wrapped) })
	}

	return handler(srv, wrapped)
}

type ctxStream struct {
	grpc.ServerStream

	ctx context.Context // grpc.ServerStream carries its context this way
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// afterResponse holds work a handler wants done once its response went out (a node reboots after it
// answered an apply, not before).
type afterResponse struct {
	mu sync.Mutex
	fn func()
}

type afterResponseKey struct{}

// runAfterResponse registers fn to run after the current RPC's response was sent.
func runAfterResponse(ctx context.Context, fn func()) {
	if ar, ok := ctx.Value(afterResponseKey{}).(*afterResponse); ok {
		ar.mu.Lock()
		ar.fn = fn
		ar.mu.Unlock()

		return
	}

	// Not inside an RPC (cannot happen with the node's server); do it now rather than never.
	go fn()
}

func takeAfterResponse(ctx context.Context) func() {
	ar, ok := ctx.Value(afterResponseKey{}).(*afterResponse)
	if !ok {
		return nil
	}

	ar.mu.Lock()
	defer ar.mu.Unlock()

	fn := ar.fn
	ar.fn = nil

	return fn
}

// afterResponseHandler is a stats.Handler that runs registered after-response work once an RPC ended,
// and counts the node's connections.
type afterResponseHandler struct{ n *Node }

func (afterResponseHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, afterResponseKey{}, &afterResponse{})
}

func (afterResponseHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.End); !ok {
		return
	}

	if fn := takeAfterResponse(ctx); fn != nil {
		time.AfterFunc(responseFlushGrace, fn)
	}
}

func (afterResponseHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

// HandleConn counts a connection whose TLS handshake succeeded: grpc-go reports ConnBegin once the
// server transport (handshake included) is up.
func (h afterResponseHandler) HandleConn(_ context.Context, s stats.ConnStats) {
	if _, ok := s.(*stats.ConnBegin); !ok {
		return
	}

	h.n.mu.Lock()
	h.n.conns++
	h.n.mu.Unlock()
}

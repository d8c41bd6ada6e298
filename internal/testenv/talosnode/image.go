package talosnode

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
)

// imageService implements ImageService.Pull: LifecycleService.Upgrade runs the installer
// from the containerd store only (internal/app/lifecycle/container.go: "installer image %q
// not found in containerd store"), so talosctl pulls it first (cmd/talosctl/cmd/talos/image.go
// imagePullInternal). Emulator choice: served where LifecycleService is.
type imageService struct {
	machine.UnimplementedImageServiceServer

	n *Node
}

// Pull records the image as present in the request's containerd namespace and streams the
// image's name, as Talos does once a pull finished.
func (s *imageService) Pull(req *machine.ImageServicePullRequest, stream grpc.ServerStreamingServer[machine.ImageServicePullResponse]) error {
	if req.GetImageRef() == "" {
		return status.Error(codes.InvalidArgument, "image reference is required")
	}

	s.n.mu.Lock()
	s.n.pulled[pulledKey(req.GetContainerd(), req.GetImageRef())] = true
	s.n.mu.Unlock()

	s.n.log("pulled %s", req.GetImageRef())

	return stream.Send(&machine.ImageServicePullResponse{Response: &machine.ImageServicePullResponse_Name{Name: req.GetImageRef()}})
}

// pulledKey names an image in one containerd namespace (the zero instance is the system one,
// as in Talos' default).
func pulledKey(c *common.ContainerdInstance, ref string) string {
	return fmt.Sprintf("%s/%s", c.GetNamespace(), ref)
}

package simulator

// vmcoreos: hosts and DRS rules as node placement meets them on a real
// vCenter (strict profile only). Called from topology-*.patch; the
// DisconnectHost/ReconnectHost methods are new (the simulator has neither).

import (
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// modifyCluster is the privilege a DRS rule change needs on the cluster.
const modifyCluster = "Host.Inventory.ModifyCluster"

// topologyHostState: vCenter deploys no VM on a host that is disconnected or
// in maintenance mode ("While in maintenance mode, the host does not allow you
// to deploy or power on a virtual machine", vSphere Resource Management).
func topologyHostState(ref types.ManagedObjectReference) types.BaseMethodFault {
	if !Strict.Enabled {
		return nil
	}
	h, ok := Map.Get(ref).(*HostSystem)
	if !ok {
		return nil
	}
	if h.Runtime.ConnectionState != types.HostSystemConnectionStateConnected {
		return &types.HostNotConnected{}
	}
	if h.Runtime.InMaintenanceMode {
		return &types.InvalidHostState{Host: &ref}
	}
	return nil
}

// topologyReconfigure: with -deny-privilege Host.Inventory.ModifyCluster, a
// rule change is refused with NoPermission, as vCenter refuses the call itself.
func topologyReconfigure(req *types.ReconfigureComputeResource_Task) types.BaseMethodFault {
	spec, ok := req.Spec.(*types.ClusterConfigSpecEx)
	if !ok || len(spec.RulesSpec) == 0 || !DeniedPrivileges[modifyCluster] {
		return nil
	}
	return &types.NoPermission{Object: req.This, PrivilegeId: modifyCluster}
}

func (h *HostSystem) DisconnectHostTask(ctx *Context, req *types.DisconnectHost_Task) soap.HasFault {
	task := CreateTask(h, "disconnectHost", func(*Task) (types.AnyType, types.BaseMethodFault) {
		h.Runtime.ConnectionState = types.HostSystemConnectionStateDisconnected
		return nil, nil
	})
	return &methods.DisconnectHost_TaskBody{Res: &types.DisconnectHost_TaskResponse{Returnval: task.Run()}}
}

func (h *HostSystem) ReconnectHostTask(ctx *Context, req *types.ReconnectHost_Task) soap.HasFault {
	task := CreateTask(h, "reconnectHost", func(*Task) (types.AnyType, types.BaseMethodFault) {
		h.Runtime.ConnectionState = types.HostSystemConnectionStateConnected
		return nil, nil
	})
	return &methods.ReconnectHost_TaskBody{Res: &types.ReconnectHost_TaskResponse{Returnval: task.Run()}}
}

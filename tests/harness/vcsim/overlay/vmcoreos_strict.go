package simulator

// vmcoreos: the strict profile. Added to govmomi's simulator package by
// build.sh through `go build -overlay`; the *.patch files next to it call these
// hooks. Each hook does nothing unless Strict.Enabled, so the default
// simulator behaves exactly as Debian's.

import (
	"encoding/json"
	"os"
	"path"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Strict is set by the vcsim main before the server starts.
var Strict struct {
	Enabled bool
	// NfcHost is host:port of the separate "ESXi host" listener that serves
	// NFC, and NfcThumbprint its SHA-1 certificate thumbprint.
	NfcHost       string
	NfcThumbprint string
	// TaskDelay makes clone tasks run this long in the background,
	// registering the VM only at the end, as a real full clone does, and
	// keeps an import's lease "initializing" that long.
	TaskDelay time.Duration
	// TaskProgressSteps: a delayed task reports info.progress in this many
	// even steps over its delay (10, 20, ... for 10), as vCenter reports a
	// full clone's; 0 reports none, as for a task queued on its host.
	TaskProgressSteps int
	// DestroyDelay makes Destroy_Task run this long in the background, not
	// cancelable, before the VM goes.
	DestroyDelay time.Duration
	// LeaseTimeout: a lease with no HttpNfcLeaseProgress for this long fails
	// (vCenter: 300 s), and its URLs stop working.
	LeaseTimeout time.Duration
}

// maxNameLength: vCenter refuses entity names of 80 characters or more.
const maxNameLength = 80

func strictCheckName(name string) types.BaseMethodFault {
	if Strict.Enabled && utf8.RuneCountInString(name) >= maxNameLength {
		return &types.InvalidName{Name: name}
	}
	return nil
}

// ESXi refuses memory that is not a multiple of 4 MB.
func strictCheckMemory(mb int64) types.BaseMethodFault {
	if Strict.Enabled && mb%4 != 0 {
		return &types.InvalidArgument{InvalidProperty: "configSpec.memoryMB"}
	}
	return nil
}

func strictCheckConfig(spec *types.VirtualMachineConfigSpec) types.BaseMethodFault {
	if err := strictCheckName(spec.Name); err != nil {
		return err
	}
	return strictCheckMemory(spec.MemoryMB)
}

// strictNeedsHost: CloneVM_Task and ImportVApp may omit the host only for a
// standalone host or a cluster with DRS enabled.
func strictNeedsHost(pool types.ManagedObjectReference, host *types.ManagedObjectReference, property string) types.BaseMethodFault {
	if !Strict.Enabled || host != nil {
		return nil
	}
	entity, ok := Map.Get(pool).(mo.Entity)
	if !ok {
		return nil
	}
	cluster, ok := Map.getEntityComputeResource(entity).(*ClusterComputeResource)
	if !ok {
		return nil
	}
	cfg, ok := cluster.ConfigurationEx.(*types.ClusterConfigInfoEx)
	if ok && cfg.DrsConfig.Enabled != nil && *cfg.DrsConfig.Enabled {
		return nil
	}
	return &types.InvalidArgument{InvalidProperty: property}
}

// strictClone is checked before a clone task is created.
func strictClone(vm *VirtualMachine, req *types.CloneVM_Task) types.BaseMethodFault {
	if Map.IsESX() {
		// A standalone ESXi has no cloning: that is vCenter's.
		return new(types.NotSupported)
	}
	if !Strict.Enabled {
		return nil
	}
	pool := req.Spec.Location.Pool
	if pool == nil && !vm.Config.Template {
		pool = vm.ResourcePool
	}
	if pool != nil {
		if err := strictNeedsHost(*pool, req.Spec.Location.Host, "spec.location.host"); err != nil {
			return err
		}
	}
	if err := strictCheckName(req.Name); err != nil {
		return err
	}
	if c := req.Spec.Config; c != nil {
		return strictCheckMemory(c.MemoryMB)
	}
	return nil
}

// strictCloneConfig applies what the clone spec asks for (the simulator
// keeps only extraConfig and instanceUuid) and, strict, the host it names.
// CPUs and memory are applied in both profiles: vCenter always honours them,
// and a bed that does not would show every node as differing from its
// cluster file (vmcoreos reconfigures nodes whose CPUs or memory differ).
func strictCloneConfig(req *types.CloneVM_Task, config *types.VirtualMachineConfigSpec, host **types.ManagedObjectReference) {
	if c := req.Spec.Config; c != nil {
		if c.MemoryMB != 0 {
			config.MemoryMB = c.MemoryMB
		}
		if c.NumCPUs != 0 {
			config.NumCPUs = c.NumCPUs
		}
	}
	if !Strict.Enabled {
		return
	}
	if req.Spec.Location.Host != nil {
		*host = req.Spec.Location.Host
	}
}

// Thin disks: the datastore's free space falls by the bytes written, not by
// capacity. thinCharged maps a disk's datastore path to what was subtracted.
var thinCharged sync.Map

func isThin(disk *types.VirtualDisk) bool {
	b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	return ok && b.ThinProvisioned != nil && *b.ThinProvisioned
}

// strictDiskCharge is what creating the disk takes from the datastore.
func strictDiskCharge(disk *types.VirtualDisk, dsPath string) int64 {
	if !Strict.Enabled || !isThin(disk) {
		return getDiskSize(disk)
	}
	thinCharged.Store(dsPath, int64(0))
	return 0
}

// strictDiskRefund is what destroying the disk gives back.
func strictDiskRefund(disk *types.VirtualDisk, dsPath string) int64 {
	if n, ok := thinCharged.LoadAndDelete(dsPath); ok {
		return n.(int64)
	}
	return getDiskSize(disk)
}

func chargeDatastore(ds *Datastore, dsPath string, n int64) {
	old, _ := thinCharged.Load(dsPath)
	if old == nil {
		return // thick: charged in full already
	}
	Map.WithLock(ds, func() {
		ds.Summary.FreeSpace -= n - old.(int64)
		ds.Info.GetDatastoreInfo().FreeSpace = ds.Summary.FreeSpace
	})
	thinCharged.Store(dsPath, n)
}

type leaseFile struct {
	ds     *Datastore
	dsPath string
}

// leaseFiles maps a lease's absolute file path to its datastore and datastore path.
var leaseFiles sync.Map

func strictLeaseFile(abs string, ds *Datastore, dsPath string) {
	if Strict.Enabled {
		leaseFiles.Store(abs, leaseFile{ds, dsPath})
	}
}

// strictUploadTarget is where an NFC upload goes: the disk file itself, so
// its size is what the VM commits.
func strictUploadTarget(abs string) (*os.File, bool) {
	if _, ok := leaseFiles.Load(abs); !ok {
		return nil, false
	}
	f, err := os.OpenFile(abs, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, false
	}
	return f, true
}

func strictUploaded(lease *HttpNfcLease, abs string, n int64) {
	v, ok := leaseFiles.Load(abs)
	if !ok {
		return
	}
	lf := v.(leaseFile)
	chargeDatastore(lf.ds, lf.dsPath, n)
	if vm, ok := Map.Get(lease.Info.Entity).(*VirtualMachine); ok {
		Map.WithLock(vm, func() { refreshFileSizes(vm) })
	}
}

func strictLeaseDone(lease *HttpNfcLease) {
	for _, abs := range lease.files {
		leaseFiles.Delete(abs)
	}
	if v, ok := leaseWatch.LoadAndDelete(lease.Self); ok {
		close(v.(*leaseTimer).done)
	}
}

type leaseTimer struct {
	progress chan struct{}
	done     chan struct{}
}

// leaseWatch holds the timer of each open lease under Strict.LeaseTimeout.
var leaseWatch sync.Map

// strictLeaseStart: the lease is "initializing" for Strict.TaskDelay, then
// ready; and it fails after Strict.LeaseTimeout without progress.
func strictLeaseStart(lease *HttpNfcLease) {
	if !Strict.Enabled {
		return
	}
	if Strict.TaskDelay > 0 {
		lease.State = types.HttpNfcLeaseStateInitializing
		go func() {
			time.Sleep(Strict.TaskDelay)
			Map.WithLock(lease, func() {
				if lease.State == types.HttpNfcLeaseStateInitializing {
					Map.Update(lease, []types.PropertyChange{{Name: "state", Val: types.HttpNfcLeaseStateReady}})
				}
			})
		}()
	}
	if Strict.LeaseTimeout <= 0 {
		return
	}
	lease.Info.LeaseTimeout = int32(Strict.LeaseTimeout / time.Second)
	t := &leaseTimer{progress: make(chan struct{}, 1), done: make(chan struct{})}
	leaseWatch.Store(lease.Self, t)
	go func() {
		wait := Strict.TaskDelay + Strict.LeaseTimeout // the clock starts when the lease is ready
		for {
			select {
			case <-t.done:
				return
			case <-t.progress:
				wait = Strict.LeaseTimeout
			case <-time.After(wait):
				leaseWatch.Delete(lease.Self)
				nfcLease.Delete(lease.Self)
				Map.WithLock(lease, func() {
					Map.Update(lease, []types.PropertyChange{
						{Name: "state", Val: types.HttpNfcLeaseStateError},
						{Name: "error", Val: &types.LocalizedMethodFault{
							Fault: new(types.Timedout), LocalizedMessage: "The lease timed out without progress."}},
					})
				})
				return
			}
		}
	}()
}

// strictLeaseProgress renews the lease, as HttpNfcLeaseProgress does on vCenter.
func strictLeaseProgress(lease *HttpNfcLease) types.BaseMethodFault {
	if lease.State == types.HttpNfcLeaseStateError {
		return new(types.Timedout)
	}
	if v, ok := leaseWatch.Load(lease.Self); ok {
		select {
		case v.(*leaseTimer).progress <- struct{}{}:
		default:
		}
	}
	return nil
}

func diskFiles(vm *VirtualMachine) []*types.VirtualDisk {
	var disks []*types.VirtualDisk
	for _, d := range object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
		disks = append(disks, d.(*types.VirtualDisk))
	}
	return disks
}

func absDiskPath(vm *VirtualMachine, dsPath string) (string, *Datastore) {
	p, fault := parseDatastorePath(dsPath)
	if fault != nil {
		return "", nil
	}
	ds := vm.findDatastore(p.Datastore)
	if ds == nil {
		return "", nil
	}
	return path.Join(ds.Info.GetDatastoreInfo().Url, p.Path), ds
}

// strictCopyDisk: the simulator's clone edits the source's disk in place
// (clearing its file name), so the template ends up pointing at the clone's
// disk. A copy leaves the source alone.
func strictCopyDisk(device types.BaseVirtualDevice) types.BaseVirtualDevice {
	disk, ok := device.(*types.VirtualDisk)
	if !Strict.Enabled || !ok {
		return device
	}
	backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok {
		return device
	}
	c, b := *disk, *backing
	c.Backing = &b
	return &c
}

// strictCloneDisks: a full clone of a thin disk copies only its written
// blocks. The clone's file gets the source's size (sparse, so the test
// machine's disk is not used) and the datastore is charged that much.
func strictCloneDisks(src, clone *VirtualMachine) {
	if !Strict.Enabled {
		return
	}
	from, to := diskFiles(src), diskFiles(clone)
	for i := 0; i < len(from) && i < len(to); i++ {
		srcName := from[i].Backing.(types.BaseVirtualDeviceFileBackingInfo).GetVirtualDeviceFileBackingInfo().FileName
		dstName := to[i].Backing.(types.BaseVirtualDeviceFileBackingInfo).GetVirtualDeviceFileBackingInfo().FileName
		srcAbs, _ := absDiskPath(src, srcName)
		dstAbs, ds := absDiskPath(clone, dstName)
		info, err := os.Stat(srcAbs)
		if err != nil || ds == nil {
			continue
		}
		if err := os.Truncate(dstAbs, info.Size()); err != nil {
			continue
		}
		chargeDatastore(ds, dstName, info.Size())
	}
	refreshFileSizes(clone)
}

// refreshFileSizes re-reads the size of every file in the VM's layoutEx (the
// simulator records it once, when the file is created) and so its
// summary.storage.committed.
func refreshFileSizes(vm *VirtualMachine) {
	for i := range vm.LayoutEx.File {
		file := &vm.LayoutEx.File[i]
		if abs, _ := absDiskPath(vm, file.Name); abs != "" {
			if info, err := os.Stat(abs); err == nil {
				file.Size = info.Size()
				file.UniqueSize = info.Size()
			}
		}
	}
	vm.updateStorage()
}

// updateDrsConfig applies a cluster spec's drsConfig, which the simulator ignores.
func updateDrsConfig(cfg *types.ClusterConfigInfoEx, spec *types.ClusterConfigSpecEx) types.BaseMethodFault {
	if d := spec.DrsConfig; d != nil {
		if d.Enabled != nil {
			cfg.DrsConfig.Enabled = d.Enabled
		}
		if d.DefaultVmBehavior != "" {
			cfg.DrsConfig.DefaultVmBehavior = d.DefaultVmBehavior
		}
	}
	return nil
}

// strictGuestNet sets guest.net from the JSON of a SET.guest.net extraConfig
// value (a list of GuestNicInfo, field names as in the vSphere API), so the
// guest simulator can report every NIC and address as VMware Tools does.
func strictGuestNet(vm *VirtualMachine, value interface{}) []types.PropertyChange {
	text, _ := value.(string)
	var nics []types.GuestNicInfo
	if text != "" {
		if err := json.Unmarshal([]byte(text), &nics); err != nil {
			return nil
		}
	}
	vm.Guest.Net = nics
	return []types.PropertyChange{{Name: "guest.net", Val: nics}}
}

// StrictSetup changes the model after Create: every cluster has DRS off, as
// on a vSphere Standard licence and in most labs (unless drs).
func StrictSetup(drs bool) {
	if drs {
		return
	}
	for _, e := range Map.All("ClusterComputeResource") {
		cluster := e.(*ClusterComputeResource)
		if cfg, ok := cluster.ConfigurationEx.(*types.ClusterConfigInfoEx); ok {
			cfg.DrsConfig.Enabled = types.NewBool(false)
		}
	}
}

func strictNfcHost() string {
	if Strict.NfcHost != "" {
		return Strict.NfcHost
	}
	return "*" // the host the client connected to
}

// cancels holds the cancel channel of each task still in its delay.
var cancels sync.Map

// strictRun runs the task inline, or with Strict.TaskDelay in the background:
// the task is "running" (and cancelable) for the delay and only then does its
// work, so a clone's VM appears only when the task ends. Strict tasks carry
// vCenter's method name and descriptionId (the simulator's "CloneVm" is no
// method a client knows), show in their entity's recentTask and name the
// chain of the events they posted (eventChainId: a clone's VmBeingClonedEvent
// carries the new VM's name, which the TaskInfo itself never does).
func strictRun(task *Task, method, descriptionID string, chain int32) types.ManagedObjectReference {
	if !Strict.Enabled {
		return task.Run()
	}
	strictNameTask(task, method, descriptionID)
	task.Info.EventChainId = chain
	if Strict.TaskDelay <= 0 {
		return task.Run()
	}
	cancel := make(chan struct{})
	cancels.Store(task.Self, cancel)
	now := time.Now()
	Map.Update(task, []types.PropertyChange{
		{Name: "info.startTime", Val: now},
		{Name: "info.state", Val: types.TaskInfoStateRunning},
		{Name: "info.cancelable", Val: true},
	})
	go func() {
		if !strictDelay(task, cancel) {
			Map.Update(task, []types.PropertyChange{
				{Name: "info.completeTime", Val: time.Now()},
				{Name: "info.state", Val: types.TaskInfoStateError},
				{Name: "info.error", Val: types.LocalizedMethodFault{
					Fault: new(types.RequestCanceled), LocalizedMessage: "The task was canceled by a user."}},
			})
			return
		}
		if _, ok := cancels.LoadAndDelete(task.Self); !ok {
			return // canceled at the last moment
		}
		// The work itself runs as it would inside the request: with its entity locked.
		Map.WithLock(*task.Info.Entity, func() { task.Run() })
	}()
	return task.Self
}

// strictDelay waits out Strict.TaskDelay, reporting info.progress in
// Strict.TaskProgressSteps steps; false if the task was canceled meanwhile.
func strictDelay(task *Task, cancel chan struct{}) bool {
	end := time.After(Strict.TaskDelay)
	var steps <-chan time.Time
	if n := Strict.TaskProgressSteps; n > 0 {
		ticker := time.NewTicker(Strict.TaskDelay / time.Duration(n))
		defer ticker.Stop()
		steps = ticker.C
	}
	step := 0
	for {
		select {
		case <-end:
			return true
		case <-cancel:
			return false
		case <-steps:
			step++
			if percent := step * 100 / Strict.TaskProgressSteps; percent < 100 {
				Map.WithLock(task, func() {
					Map.Update(task, []types.PropertyChange{{Name: "info.progress", Val: int32(percent)}})
				})
			}
		}
	}
}

// strictNameTask gives the task vCenter's method name and descriptionId, and
// shows it in its entity's recentTask.
func strictNameTask(task *Task, method, descriptionID string) {
	task.Info.Name = method
	task.Info.DescriptionId = descriptionID
	if e, ok := Map.Get(*task.Info.Entity).(mo.Entity); ok {
		task.Info.EntityName = e.Entity().Name
		Map.Update(e, []types.PropertyChange{
			{Name: "recentTask", Val: append(e.Entity().RecentTask, task.Self)},
		})
	}
}

// strictDestroy: with Strict.DestroyDelay, Destroy_Task runs that long in the
// background before the VM goes, and cannot be canceled (vCenter refuses
// CancelTask on it), as deleting a VM's files takes a while on real storage.
func strictDestroy(task *Task) types.ManagedObjectReference {
	if !Strict.Enabled || Strict.DestroyDelay <= 0 {
		return task.Run()
	}
	strictNameTask(task, "Destroy_Task", "VirtualMachine.destroy")
	Map.Update(task, []types.PropertyChange{
		{Name: "info.startTime", Val: time.Now()},
		{Name: "info.state", Val: types.TaskInfoStateRunning},
	})
	go func() {
		time.Sleep(Strict.DestroyDelay)
		Map.WithLock(*task.Info.Entity, func() { task.Run() })
	}()
	return task.Self
}

// CancelTask cancels a task still in its strict delay; one that has finished
// cannot be, and the simulator's inline tasks are never cancelable.
func (t *Task) CancelTask(ctx *Context, req *types.CancelTask) soap.HasFault {
	body := new(methods.CancelTaskBody)
	if c, ok := cancels.LoadAndDelete(t.Self); ok {
		close(c.(chan struct{}))
		body.Res = new(types.CancelTaskResponse)
		return body
	}
	if t.Info.State == types.TaskInfoStateSuccess || t.Info.State == types.TaskInfoStateError {
		body.Fault_ = Fault("", new(types.InvalidState))
		return body
	}
	body.Fault_ = Fault("", new(types.NotSupported))
	return body
}

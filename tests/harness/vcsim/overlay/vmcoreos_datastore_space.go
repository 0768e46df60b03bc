package simulator

// vmcoreos: datastores as small, and of the type, a test needs (-datastore-free,
// -datastore-type, -datastore-thick): the simulator sizes them by the test machine's filesystem
// and calls them all "OTHER"/"local". The strict bed's thin-disk bookkeeping
// counts down from the free space set here.

import "github.com/vmware/govmomi/vim25/types"

// StrictDatastores sets every datastore's free space (0: leave it) and type ("": leave it);
// thick: the datastore has no thin provisioning (perFileThinProvisioningSupported false).
func StrictDatastores(free int64, kind string, thick bool) {
	for _, e := range Map.All("Datastore") {
		ds := e.(*Datastore)
		info := ds.Info.GetDatastoreInfo()
		if free > 0 {
			ds.Summary.FreeSpace = free
			info.FreeSpace = free
			if ds.Summary.Capacity < free {
				ds.Summary.Capacity = free
			}
		}
		if thick {
			ds.Capability.PerFileThinProvisioningSupported = false
		}
		if kind != "" {
			ds.Summary.Type = kind
			if kind == string(types.HostFileSystemVolumeFileSystemTypeVsan) {
				ds.Summary.Url = "ds:///vmfs/volumes/vsan:" + ds.Self.Value + "/"
			}
		}
	}
}

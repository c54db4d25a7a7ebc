//! Where a swarm download may take a blob from, with sites: a layer crosses into a site once.
//!
//! Inside a site a node takes bytes from its site's peers only. One node of the site, the
//! site's owner of the digest (the owner rule among the site's members), brings it in: it
//! takes the blob from anywhere in the fleet — providers in other sites, or the fleet's owner,
//! which alone goes upstream. A node that is not its site's owner and finds no site peer with
//! the blob asks the site's owner to bring it in (`FetchBlob` with `into_site`), and reads it
//! from there while it arrives. With `upstream_per_site`, a site's owner goes to the upstream
//! itself instead of to the fleet's owner: for sites whose own internet link is cheaper than
//! the link between sites. Without sites, every node is its own gateway and the fleet's owner
//! is the one to ask.

use shoal_protocol::Digest;

use crate::fetch::fleet::Fleet;
use crate::p2p::{Owner, PeerId, PeerInfo};

/// How one download reaches the blob.
pub(crate) struct Reach {
    /// This node takes pieces from other sites (it is its site's owner of the digest, or it
    /// was asked to bring the blob in, or there are no sites).
    pub gateway: bool,
    pub site: Option<String>,
    /// Whom to ask to fetch the blob when no provider serves it, in order, with `into_site`.
    pub escalations: Vec<(PeerInfo, bool)>,
    /// The peer that is asked only for pieces no one else serves: the one that gets the blob
    /// first (the site's owner for a member of a site, else the fleet's owner).
    pub first_holder: Option<PeerId>,
}

impl Reach {
    pub(crate) fn new(fleet: &dyn Fleet, digest: &Digest, into_site: bool, per_site: bool) -> Self {
        let site = fleet.site();
        let key = digest.as_bytes();
        let fleet_owner = match fleet.owner(key) {
            Owner::Remote(owner) => Some(owner),
            Owner::Local => None,
        };
        let site_owner = match (&site, fleet.site_owner(key)) {
            (None, _) => None,
            (Some(_), Owner::Remote(owner)) => Some(owner),
            (Some(_), Owner::Local) => None,
        };
        let gateway = site.is_none() || into_site || site_owner.is_none();
        let mut escalations = Vec::new();
        if !gateway && let Some(site_owner) = &site_owner {
            escalations.push((site_owner.clone(), true));
        }
        // A member whose site owner fails still has the fleet's owner; a gateway with
        // `upstream_per_site` goes upstream itself.
        if let Some(owner) = &fleet_owner
            && !(gateway && per_site)
            && escalations.iter().all(|(p, _)| p.id != owner.id)
        {
            escalations.push((owner.clone(), false));
        }
        let first_holder = escalations.first().map(|(p, _)| p.id);
        Self { gateway, site, escalations, first_holder }
    }

    /// Whether a provider may serve this download: a member of a site reads only its site.
    pub(crate) fn admits(&self, peer: &PeerInfo) -> bool {
        self.gateway || peer.site == self.site
    }
}

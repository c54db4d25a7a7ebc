//! How the swarm task reacts to what happens on the network: connections, identify adverts,
//! DHT query progress, owner requests and answers, mDNS discoveries, failed pings.

use std::time::Instant;

use libp2p::identify;
use libp2p::kad::{self, GetProvidersOk, QueryResult};
use libp2p::request_response::{self, Message};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{PeerId, StreamProtocol, mdns, ping};
use shoal_protocol::peer::{ErrorCode, KAD_PROTOCOL, OwnerRequest, OwnerResponse, PeerAdvert};

use super::behaviour::BehaviourEvent;
use super::error::P2pError;
use super::peers::PeerInfo;
use super::task::{Command, Task};

type OwnerEvent = request_response::Event<OwnerRequest, OwnerResponse>;

impl Task {
    pub(super) fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "control plane listening");
                self.listen_addrs.push(address);
                self.publish();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
                self.publish();
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                self.liveness.heard(peer_id, Instant::now());
                tracing::debug!(peer = %peer_id, remote = %endpoint.get_remote_address(), "connected");
                if endpoint.is_dialer() {
                    self.dialled.insert(connection_id, endpoint.get_remote_address().clone());
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                self.dialled.remove(&connection_id);
                if num_established == 0 {
                    // Met again, it may bootstrap again: the set stays as large as the fleet.
                    self.bootstrapped_once.remove(&peer_id);
                    self.liveness.forget(&peer_id);
                }
                if num_established == 0 && self.infos.remove(&peer_id).is_some() {
                    tracing::info!(peer = %peer_id, "peer left");
                    self.publish();
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, %error, "outgoing connection failed");
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                tracing::debug!(remote = %send_back_addr, %error, "incoming connection failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => self.on_identified(peer_id, info),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::Owner(event)) => self.on_owner(event),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                    let opts = DialOpts::peer_id(peer)
                        .addresses(vec![addr])
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if let Err(e) = self.swarm.dial(opts) {
                        tracing::debug!(%peer, error = %e, "cannot dial mDNS peer");
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(_),
                ..
            })) => self.liveness.heard(peer, Instant::now()),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(error),
            })) => {
                // libp2p leaves a connection open when pings fail; a peer that cannot answer a
                // ping must not stay a member, or it would keep owning keys.
                tracing::info!(%peer, %error, "ping failed; closing the connection");
                self.swarm.close_connection(connection);
            }
            _ => {}
        }
    }

    fn on_identified(&mut self, peer_id: PeerId, info: identify::Info) {
        let advert = match PeerAdvert::parse_agent_version(&info.agent_version) {
            Ok(advert) => advert,
            Err(error) => {
                tracing::warn!(peer = %peer_id, agent = %info.agent_version, %error, "not a usable Shoal peer; disconnecting");
                let _ = self.swarm.disconnect_peer_id(peer_id);
                return;
            }
        };
        if info.protocols.contains(&StreamProtocol::new(KAD_PROTOCOL)) {
            for addr in &info.listen_addrs {
                self.swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
            }
        }
        let peer = PeerInfo {
            id: peer_id,
            http_url: advert.http_url,
            site: advert.site,
            addrs: info.listen_addrs,
            version: PeerAdvert::product_version(&info.agent_version).to_owned(),
        };
        if self.infos.insert(peer_id, peer.clone()).as_ref() != Some(&peer) {
            tracing::info!(peer = %peer_id, http = %peer.http_url, site = ?peer.site, "peer joined");
            self.publish();
        }
        // Learn the rest of the cluster through the first peers met.
        if self.bootstrapped_once.insert(peer_id) {
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::GetProviders(result),
                step,
                ..
            } => {
                let Some(found) = self.provider_queries.get(&id) else { return };
                if let Ok(GetProvidersOk::FoundProviders { providers, .. }) = result {
                    for provider in providers {
                        let _ = found.send(provider);
                    }
                }
                // The asker stops listening at its budget: stop the query with it.
                if step.last || found.is_closed() {
                    self.provider_queries.remove(&id);
                    if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        query.finish();
                    }
                }
            }
            kad::Event::RoutingUpdated { peer, .. } if !self.swarm.is_connected(&peer) => {
                // Every member stays connected to every other, so that all agree on owners.
                let opts = DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let _ = self.swarm.dial(opts);
            }
            other => tracing::trace!(event = ?other, "kademlia"),
        }
    }

    fn on_owner(&mut self, event: OwnerEvent) {
        match event {
            request_response::Event::Message { peer, message, .. } => {
                self.liveness.heard(peer, Instant::now());
                match message {
                    Message::Request { request, channel, .. } => self.serve(peer, request, channel),
                    Message::Response { request_id, response } => {
                        if let Some((_, reply)) = self.asks.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                }
            }
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                if let Some((_, reply)) = self.asks.remove(&request_id) {
                    let _ = reply.send(Err(P2pError::from_outbound(peer, error)));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "owner request from peer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Runs the owner service for one request in its own task; the answer comes back as a
    /// command, so the swarm never waits on an upstream.
    fn serve(
        &mut self,
        peer: PeerId,
        request: OwnerRequest,
        channel: request_response::ResponseChannel<OwnerResponse>,
    ) {
        let Some(commands) = self.self_commands.upgrade() else { return };
        let service = self.service.clone();
        let http_url = self.advertise_url.clone();
        tracing::debug!(%peer, ?request, "owner request");
        tokio::spawn(async move {
            let response = match request {
                OwnerRequest::FetchBlob { registry, repo, digest, into_site } => {
                    match service.fetch_blob(registry, repo, digest, into_site).await {
                        Ok(()) => OwnerResponse::FetchAccepted { http_url },
                        Err(code) => OwnerResponse::Error(known(code)),
                    }
                }
                OwnerRequest::ResolveTag { registry, repo, tag } => {
                    match service.resolve_tag(registry, repo, tag).await {
                        Ok(t) => OwnerResponse::TagResolved {
                            digest: t.digest,
                            media_type: t.media_type,
                            manifest: t.bytes.to_vec(),
                        },
                        Err(code) => OwnerResponse::Error(known(code)),
                    }
                }
                OwnerRequest::Hold(hold) => match service.hold(hold).await {
                    Ok(state) => OwnerResponse::Hold(state),
                    Err(code) => OwnerResponse::Error(known(code)),
                },
                OwnerRequest::Release(release) => match service.release(release).await {
                    Ok(state) => OwnerResponse::Hold(state),
                    Err(code) => OwnerResponse::Error(known(code)),
                },
            };
            let _ = commands.send(Command::Respond { channel, response });
        });
    }
}

fn known(code: ErrorCode) -> ErrorCode {
    if code == ErrorCode::Unspecified { ErrorCode::Internal } else { code }
}

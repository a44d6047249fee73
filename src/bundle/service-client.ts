// Requests to an OPA management service (bundle server, log and status collector): the
// service's URL, headers, bearer token and extra CA; a bounded answer (a server cannot make us
// hold more than `maxBytes`), a timeout. I/O.
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { ServiceConfig } from './config.js';

export interface ServiceResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface ServiceRequest {
  method: 'GET' | 'POST';
  /** Appended to the service URL (a leading `/` optional). */
  resource: string;
  headers?: Record<string, string>;
  body?: Buffer;
  timeoutMs: number;
  maxBytes: number;
  /** Ends the request early (shutdown while a long poll waits). */
  signal?: AbortSignal;
}

export class ServiceRequestError extends Error {
  override name = 'ServiceRequestError';
}

export function serviceUrl(service: ServiceConfig, resource: string): URL {
  return new URL(`${service.url}/${resource.replace(/^\/+/, '')}`);
}

export function requestService(service: ServiceConfig, req: ServiceRequest): Promise<ServiceResponse> {
  const url = serviceUrl(service, req.resource);
  const headers: Record<string, string> = { ...service.headers, ...(req.headers ?? {}) };
  if (service.bearer) headers.authorization = `${service.bearer.scheme} ${service.bearer.token}`;
  if (req.body) headers['content-length'] = String(req.body.length);
  const client = url.protocol === 'https:' ? https : http;
  // The service's CA is trusted besides the system's roots, not instead of them.
  const ca = url.protocol === 'https:' && service.caCertFile ? { ca: [...tls.rootCertificates, readFileSync(service.caCertFile, 'utf8')] } : {};
  return new Promise((resolve, reject) => {
    const request = client.request(url, { method: req.method, headers, timeout: req.timeoutMs, ...(req.signal ? { signal: req.signal } : {}), ...ca }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > req.maxBytes) {
          request.destroy(new ServiceRequestError(`answer from ${url.origin} exceeds ${req.maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => {
        if (!res.complete) reject(new ServiceRequestError(`${url.origin}: the answer was cut short`));
        else resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
      });
      res.on('error', (err) => reject(new ServiceRequestError(`${url.origin}: ${err.message}`)));
    });
    request.on('timeout', () => request.destroy(new ServiceRequestError(`no answer from ${url.origin} within ${req.timeoutMs} ms`)));
    request.on('error', (err) => reject(err instanceof ServiceRequestError ? err : new ServiceRequestError(`${url.origin}: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
    request.end(req.body);
  });
}

// The addresses an upstream response hands out. Pure.
import dnsPacket from 'dns-packet';

export interface AnsweredAddress {
  family: 4 | 6;
  address: string;
  ttl: number;
}

/**
 * A and AAAA records of the answer section, in order. Every address record of the answer
 * counts, whatever its owner name: behind a CNAME chain the client connects to these addresses
 * believing they are the name it asked for. Throws when the message does not decode.
 */
export function answeredAddresses(message: Buffer): AnsweredAddress[] {
  const packet = dnsPacket.decode(message);
  const out: AnsweredAddress[] = [];
  for (const answer of packet.answers ?? []) {
    if (answer.type === 'A' && typeof answer.data === 'string') {
      out.push({ family: 4, address: answer.data, ttl: answer.ttl ?? 0 });
    } else if (answer.type === 'AAAA' && typeof answer.data === 'string') {
      out.push({ family: 6, address: answer.data, ttl: answer.ttl ?? 0 });
    }
  }
  return out;
}

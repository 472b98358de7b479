// The player's clock: a silent WAV of the file's length (8 kHz, 8 bit, mono), made in the browser.
// For a file whose format this browser cannot play, the player runs over this silence instead, so
// the transcript and the timeline still follow a position.

const RATE = 8000;
/** At most two hours (about 58 MB of silence). */
const LONGEST_S = 7200;

export function MediaClock(seconds: number): Blob {
  const samples = Math.max(1, Math.ceil(Math.min(seconds, LONGEST_S) * RATE));
  const header = new DataView(new ArrayBuffer(44));
  const text = (offset: number, value: string) => {
    for (let index = 0; index < value.length; index++) header.setUint8(offset + index, value.charCodeAt(index));
  };
  text(0, "RIFF");
  header.setUint32(4, 36 + samples, true);
  text(8, "WAVE");
  text(12, "fmt ");
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); // mono
  header.setUint32(24, RATE, true);
  header.setUint32(28, RATE, true); // bytes per second
  header.setUint16(32, 1, true); // block align
  header.setUint16(34, 8, true); // bits per sample
  text(36, "data");
  header.setUint32(40, samples, true);
  const body = new Uint8Array(samples).fill(128); // 8-bit silence
  return new Blob([header.buffer, body], { type: "audio/wav" });
}

/** m:ss (or h:mm:ss) of a time in seconds. */
export function formatClock(seconds: number | null | undefined): string {
  const total = Math.max(0, Math.floor(seconds ?? 0));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = String(total % 60).padStart(2, "0");
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}
